// Package provisioning holds the logic of Hallmark's ceremonies: creating
// a consortium (the genesis file its founding administrators sign),
// issuing SM2 X.509 certificates from an organisation's CA to node and
// kiosk keys (with the TPM attestation of node keys carried in the
// request and the certificate), enrolling nodes and kiosks, and the
// multi-party transactions governance needs (drafts that several
// administrators sign, one after the other, from files).
//
// Everything here is pure: no network, no clocks (callers pass times), no
// files (callers pass bytes). hallmarkctl wires it to keys in custody
// (package hsm), to files and to a node's API; the node runtime uses the
// genesis file verification at start (firmware/genesis).
//
// docs/OPERATIONS.md describes each ceremony step by step.
package provisioning
