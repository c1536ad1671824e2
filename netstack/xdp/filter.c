//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Hallmark's kernel fast path. It looks at UDP datagrams addressed to the
// kiosk ingress port and the peer (QUIC) port and drops, before the kernel
// allocates anything for them, those that user space would refuse anyway.
// Every verdict is counted. The Go twin in twin.go makes the same decisions
// in the same order; keep the two in step.
//
// The maps are written only by user space, from facts it has verified:
// admitted and frozen senders (ledger state), transaction ids it accepted
// after checking their signatures, admitted node addresses, the clock
// offset. The program itself writes only its per-source token buckets and
// its counters. docs/PROTOCOL.md explains the threat model.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// Kiosk datagram header (docs/PROTOCOL.md). Offsets within the UDP payload.
#define KIOSK_MAGIC 0x484D4B54 // "HMKT"
#define KIOSK_VERSION 1
#define KIOSK_HEADER_SIZE 56
#define KIOSK_MAX_DATAGRAM 1232
#define OFF_MAGIC 0
#define OFF_VERSION 4
#define OFF_FLAGS 5
#define OFF_LENGTH 6
#define OFF_KEY_ID 8
#define OFF_TX_ID 16
#define OFF_TIMESTAMP 48

#define NS_PER_MS 1000000ULL
#define TOKEN 1000000000ULL // one token in bucket units (token-nanoseconds)

enum verdict {
	VERDICT_PASS_OTHER = 0,      // not addressed to a port we guard
	VERDICT_PASS_INGRESS = 1,    // kiosk datagram handed to user space
	VERDICT_PASS_PEER = 2,       // peer packet from an admitted node address
	VERDICT_DROP_MALFORMED = 3,  // bad header, or lengths that disagree
	VERDICT_DROP_NOT_ADMITTED = 4,
	VERDICT_DROP_FROZEN = 5,
	VERDICT_DROP_REPLAY = 6,     // transaction id already accepted
	VERDICT_DROP_STALE = 7,      // timestamp outside the window
	VERDICT_DROP_RATE = 8,       // source over its token bucket
	VERDICT_DROP_PEER = 9,       // peer port, source is not an admitted node
	VERDICT_COUNT = 10,
};

// Values of the senders map.
enum sender_state {
	SENDER_ADMITTED = 1,
	SENDER_FROZEN = 2,
};

struct config {
	__u16 ingress_port; // host byte order; 0 disables the ingress checks
	__u16 peer_port;    // host byte order; 0 disables the peer check
	__u32 _pad;
	// Wall clock in ns = bpf_ktime_get_ns() (CLOCK_MONOTONIC) + clock_offset_ns.
	__s64 clock_offset_ns;
	// If non-zero, used instead of bpf_ktime_get_ns(): a test hook that
	// lets the Go twin and this program see the same instant.
	__u64 clock_override_ns;
	__u64 max_age_ms;    // oldest acceptable timestamp: now - max_age_ms
	__u64 max_future_ms; // newest acceptable timestamp: now + max_future_ms
	__u64 rate_per_sec;  // token refill per second; 0 disables the limiter
	__u64 burst_units;   // bucket capacity in units (tokens * TOKEN)
	__u64 fill_cap_ns;   // elapsed time beyond which the bucket is full
};

// An IPv6 address, or an IPv4 address mapped into IPv6 (::ffff:a.b.c.d).
struct addr {
	__u8 b[16];
};

struct bucket {
	__u64 units; // tokens * TOKEN
	__u64 last_ns;
};

struct tx_id {
	__u8 b[32];
};

struct key_id {
	__u8 b[8];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct key_id);
	__type(value, __u8);
} senders SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tx_id);
	__type(value, __u8);
} accepted SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct addr);
	__type(value, __u8);
} peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct addr);
	__type(value, struct bucket);
} buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VERDICT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// Makes the verdict enum part of the BTF, so that bpf2go emits it for Go.
const enum verdict *unused_verdict __attribute__((unused));

static __always_inline __u64 now_ns(const struct config *cfg)
{
	if (cfg->clock_override_ns)
		return cfg->clock_override_ns;
	return bpf_ktime_get_ns();
}

static __always_inline __u64 load_be64(const __u8 *p)
{
	return ((__u64)p[0] << 56) | ((__u64)p[1] << 48) | ((__u64)p[2] << 40) |
	       ((__u64)p[3] << 32) | ((__u64)p[4] << 24) | ((__u64)p[5] << 16) |
	       ((__u64)p[6] << 8) | (__u64)p[7];
}

// rate_ok charges one token to src's bucket and reports whether it had one.
static __always_inline int rate_ok(const struct config *cfg, const struct addr *src, __u64 now)
{
	if (cfg->rate_per_sec == 0)
		return 1;
	struct bucket *b = bpf_map_lookup_elem(&buckets, src);
	if (!b) {
		struct bucket fresh = { .last_ns = now };
		if (cfg->burst_units < TOKEN)
			return 0;
		fresh.units = cfg->burst_units - TOKEN;
		bpf_map_update_elem(&buckets, src, &fresh, BPF_ANY);
		return 1;
	}
	// Concurrent updates from several CPUs may lose a refill or a charge;
	// the limit is approximate by that much.
	__u64 elapsed = now > b->last_ns ? now - b->last_ns : 0;
	if (elapsed > cfg->fill_cap_ns)
		elapsed = cfg->fill_cap_ns;
	__u64 units = b->units + elapsed * cfg->rate_per_sec;
	if (units > cfg->burst_units)
		units = cfg->burst_units;
	b->last_ns = now;
	if (units < TOKEN) {
		b->units = units;
		return 0;
	}
	b->units = units - TOKEN;
	return 1;
}

// kiosk_verdict judges a datagram addressed to the ingress port. payload
// points at the UDP payload of payload_len bytes, all inside the frame.
static __always_inline enum verdict kiosk_verdict(const struct config *cfg, const struct addr *src,
						  const __u8 *p, __u32 payload_len, void *data_end)
{
	if (payload_len <= KIOSK_HEADER_SIZE || payload_len > KIOSK_MAX_DATAGRAM)
		return VERDICT_DROP_MALFORMED;
	if ((void *)(p + KIOSK_HEADER_SIZE) > data_end)
		return VERDICT_DROP_MALFORMED;
	__u32 magic = ((__u32)p[0] << 24) | ((__u32)p[1] << 16) | ((__u32)p[2] << 8) | p[3];
	if (magic != KIOSK_MAGIC || p[OFF_VERSION] != KIOSK_VERSION || p[OFF_FLAGS] != 0)
		return VERDICT_DROP_MALFORMED;
	__u32 length = ((__u32)p[OFF_LENGTH] << 8) | p[OFF_LENGTH + 1];
	if (length != payload_len)
		return VERDICT_DROP_MALFORMED;

	struct key_id kid;
	__builtin_memcpy(&kid, p + OFF_KEY_ID, sizeof(kid));
	__u8 *state = bpf_map_lookup_elem(&senders, &kid);
	if (!state)
		return VERDICT_DROP_NOT_ADMITTED;
	if (*state == SENDER_FROZEN)
		return VERDICT_DROP_FROZEN;
	if (*state != SENDER_ADMITTED)
		return VERDICT_DROP_NOT_ADMITTED;

	__u64 now = now_ns(cfg);
	__u64 now_ms = (now + (__u64)cfg->clock_offset_ns) / NS_PER_MS;
	__u64 ts = load_be64(p + OFF_TIMESTAMP);
	if (ts > now_ms + cfg->max_future_ms)
		return VERDICT_DROP_STALE;
	if (now_ms > cfg->max_age_ms && ts < now_ms - cfg->max_age_ms)
		return VERDICT_DROP_STALE;

	struct tx_id id;
	__builtin_memcpy(&id, p + OFF_TX_ID, sizeof(id));
	if (bpf_map_lookup_elem(&accepted, &id))
		return VERDICT_DROP_REPLAY;

	if (!rate_ok(cfg, src, now))
		return VERDICT_DROP_RATE;
	return VERDICT_PASS_INGRESS;
}

// udp_verdict judges a UDP datagram once the IP layer has been read.
static __always_inline enum verdict udp_verdict(const struct config *cfg, const struct addr *src,
						struct udphdr *udp, __u32 ip_payload_len, int more_fragments,
						void *data_end)
{
	if ((void *)(udp + 1) > data_end)
		return VERDICT_PASS_OTHER;
	__u16 dport = bpf_ntohs(udp->dest);
	if (dport == 0)
		return VERDICT_PASS_OTHER;
	if (dport == cfg->peer_port) {
		if (bpf_map_lookup_elem(&peers, src))
			return VERDICT_PASS_PEER;
		return VERDICT_DROP_PEER;
	}
	if (dport != cfg->ingress_port)
		return VERDICT_PASS_OTHER;
	// A first fragment is a datagram too large for one frame: kiosk
	// datagrams never are.
	if (more_fragments)
		return VERDICT_DROP_MALFORMED;
	__u32 ulen = bpf_ntohs(udp->len);
	if (ulen < sizeof(*udp) || ulen > ip_payload_len)
		return VERDICT_DROP_MALFORMED;
	__u32 payload_len = ulen - sizeof(*udp);
	__u8 *p = (__u8 *)(udp + 1);
	if ((void *)p + payload_len > data_end || payload_len > KIOSK_MAX_DATAGRAM)
		return VERDICT_DROP_MALFORMED;
	return kiosk_verdict(cfg, src, p, payload_len, data_end);
}

static __always_inline enum verdict classify(struct xdp_md *ctx, const struct config *cfg)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return VERDICT_PASS_OTHER;

	struct addr src = {};
	__u16 proto = bpf_ntohs(eth->h_proto);
	if (proto == ETH_P_IP) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end)
			return VERDICT_PASS_OTHER;
		if (ip->version != 4 || ip->ihl < 5 || ip->protocol != IPPROTO_UDP)
			return VERDICT_PASS_OTHER;
		__u32 hlen = ip->ihl * 4;
		__u32 tot = bpf_ntohs(ip->tot_len);
		// A non-first fragment carries no UDP header: nothing to judge.
		if (ip->frag_off & bpf_htons(0x1fff))
			return VERDICT_PASS_OTHER;
		struct udphdr *udp = (void *)ip + hlen;
		if ((void *)(udp + 1) > data_end)
			return VERDICT_PASS_OTHER;
		src.b[10] = 0xff;
		src.b[11] = 0xff;
		__builtin_memcpy(&src.b[12], &ip->saddr, 4);
		if (tot < hlen)
			tot = hlen;
		int mf = (ip->frag_off & bpf_htons(0x2000)) != 0;
		return udp_verdict(cfg, &src, udp, tot - hlen, mf, data_end);
	}
	if (proto == ETH_P_IPV6) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end)
			return VERDICT_PASS_OTHER;
		// Extension headers are not followed: such packets pass, and
		// user space judges them in full.
		if (ip6->version != 6 || ip6->nexthdr != IPPROTO_UDP)
			return VERDICT_PASS_OTHER;
		__builtin_memcpy(&src.b, &ip6->saddr, 16);
		return udp_verdict(cfg, &src, (struct udphdr *)(ip6 + 1), bpf_ntohs(ip6->payload_len), 0,
				   data_end);
	}
	return VERDICT_PASS_OTHER;
}

SEC("xdp")
int hallmark_filter(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config_map, &zero);
	if (!cfg)
		return XDP_PASS;
	enum verdict v = classify(ctx, cfg);
	__u32 idx = v;
	__u64 *n = bpf_map_lookup_elem(&counters, &idx);
	if (n)
		*n += 1;
	switch (v) {
	case VERDICT_PASS_OTHER:
	case VERDICT_PASS_INGRESS:
	case VERDICT_PASS_PEER:
		return XDP_PASS;
	default:
		return XDP_DROP;
	}
}

char __license[] SEC("license") = "Dual BSD/GPL";
