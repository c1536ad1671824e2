// Package images defines Hallmark's signed firmware releases: the release
// manifest (canonical CBOR, signed by an M-of-N threshold of release keys),
// the disk image layout it describes, verification of an image or a slot
// payload against it, and the measurement the booted firmware extends into
// the TPM. Building images is in images/builder, flashing and updating in
// images/flash, and the A/B boot control in images/bootctl.
// docs/IMAGES.md describes the formats byte by byte.
package images
