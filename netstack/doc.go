// Package netstack groups Hallmark's networking; the code lives in its
// subpackages, each with one job:
//
//   - [hallmark/netstack/peer]: the QUIC transport between nodes, with
//     short-lived TLS transport keys bound to each node's SM2 identity and
//     an admitted set updated at runtime; messages, broadcast and
//     request/response.
//   - [hallmark/netstack/kiosk]: the kiosk datagram and receipt wire
//     format (pure; shared with the SDK in package client).
//   - [hallmark/netstack/ingress]: the node's kiosk endpoint: header and
//     body checks, admission, signatures, submission to the mempool,
//     signed receipts.
//   - [hallmark/netstack/xdp]: the kernel fast path (BPF program attached
//     with XDP) and its Go twin, which run the same verdicts.
//
// docs/PROTOCOL.md specifies the wire formats and the fast path's threat
// model.
package netstack
