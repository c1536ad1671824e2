// Package app is Hallmark's ledger application: the rules of every
// transaction type and their execution against world state.
//
// Execution is a pure function. [Executor.ExecuteBlock] takes a read-only
// [View] of the state after the parent block and a block, and returns the
// block's writes, a result per transaction (success or a reason code from
// package reason), audit events, payload erasures, governance
// reconfiguration and the new state root. It performs no I/O, reads no
// clock and uses no randomness: the block's header supplies time and
// height, so every node that executes the same block on the same state
// gets the same output. A failing transaction is recorded as failed and
// changes nothing but the consumption of its id; execution of a block never
// stops at a bad transaction.
//
// The same checks serve admission: [Checker] runs them against a view
// without applying anything, for the mempool and the leader, and
// [CheckProposal] adds the payload checks a voter makes. [AuthorizeRead]
// decides audited reads for the API. [Genesis] turns a genesis document
// into the initial state.
//
// docs/TRANSACTIONS.md describes every transaction type, the state
// layout, replay protection, governance and the reason codes.
package app
