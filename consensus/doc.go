// Package consensus is Hallmark's BFT ordering protocol: two-chain HotStuff
// in the Jolteon / DiemBFT-v4 family, written as a deterministic state
// machine.
//
// A [Core] is a pure event handler. The caller (a driver: the simulator in
// consensus/sim, the real-time driver in consensus/driver) feeds it events
// stamped with the local clock — messages received, timers fired, blocks
// validated, payloads built, signatures made — and carries out the effects
// it returns: send and broadcast messages, persist safety data and sign,
// validate a block, build a proposal payload, commit blocks, set the timer,
// serve catch-up reads. The core has no goroutines, clocks, sockets or
// randomness, so the same inputs always give the same outputs.
//
// Votes, timeouts and proposals are signed by the driver through a
// [gm.Signer] after it has durably stored the [SafetyData] that came with
// the [Sign] effect; the core releases a vote only when the [Signed] event
// comes back, so no vote can leave before its safety data is on disk.
//
// docs/CONSENSUS.md describes the protocol, the wire format, the safety
// rules, epochs and catch-up.
package consensus
