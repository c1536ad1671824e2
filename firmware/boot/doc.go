// Package boot is what runs as PID 1 when a Hallmark appliance boots from
// its image: it mounts the kernel filesystems, loads the kernel modules
// the image lists, finds its partitions, measures the slot it booted from
// into a TPM PCR before any key is unsealed, checks the release against
// the device (hardware id, anti-rollback counter), mounts the data
// partition, brings the network up from the device's configuration,
// unseals the device's keys, and then starts and supervises the node with
// restart back-off. Once the node has been healthy for a while, a slot on
// trial after an update commits itself; a trial that does not get there
// in time reboots, and the bootloader falls back to the previous slot.
//
// Three adapter points are left for later parts of the system:
//   - [Options.RunNode] starts the node (the node runtime plugs in here;
//     [ExecNode] runs a command);
//   - [Options.Unsealer] recovers sealed keys (package hsm plugs in here;
//     [TPMUnsealer] is the stand-in);
//   - [Options.Counter] is the anti-rollback counter (package hsm plugs
//     in here; [TPMCounter] is the stand-in).
package boot
