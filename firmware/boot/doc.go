// Package boot is what runs as PID 1 when a Hallmark appliance boots from
// its image: it mounts the kernel filesystems, loads the kernel modules
// the image lists, finds its partitions, measures the slot it booted from
// into the TPM (hsm/tpm.ExtendPCR into images.MeasurementPCR, which is
// hsm.FirmwarePCR) before anything can unseal a key, checks the release
// against the device (hardware id, the NV anti-rollback counter of
// hsm/tpm), mounts the data partition, brings the network up from the
// device's configuration, and then starts and supervises the node with
// restart back-off. The node opens its key from [KeyDir] with hsm.Open:
// a tpm-sealed key unseals only under the release it was sealed to. Once
// the node has been healthy for a while, a slot on trial after an update
// commits itself and the anti-rollback counter rises to its security
// version; a trial that does not get there in time reboots, and the
// bootloader falls back to the previous slot.
//
// [Options.RunNode] is the adapter point for the node runtime; [ExecNode]
// runs a command.
package boot
