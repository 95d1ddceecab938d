/* Connection state and timeouts shared by both conntracks (lb_conntrack, pol_conntrack):
 * one set of timeouts (lb_config) applies to both, so an LB entry and a policy entry of
 * one connection expire together.
 */
#ifndef PODLAB_CT_H
#define PODLAB_CT_H

#include "packet.h"

#define NSEC 1000000000ULL
#define PIN __uint(pinning, LIBBPF_PIN_BY_NAME)

/* Add one to counter `which` of a PERCPU_ARRAY of __u64 (lb_counters, pol_counters). */
static __always_inline void bump(void *counters, __u32 which)
{
	__u64 *n = bpf_map_lookup_elem(counters, &which);

	if (n)
		*n += 1;
}

enum ct_flags {
	CT_HAIRPIN = 1,     /* LB: the client is its own backend: SNAT to the VIP, turn at ingress */
	CT_CLOSING = 2,     /* FIN or RST seen: a new SYN on this tuple is a new connection */
	CT_SYN_ONLY = 4,    /* only handshake packets so far: the short SYN timeout */
};

/* A conntrack key: the tuple as the program sees it, and `dir`, which the LB uses for the
 * direction (CT_FORWARD/CT_REPLY) and policy for the hook that admitted the connection. */
struct ct_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 dir;
	__u16 pad;
};

static __always_inline void ct_key_of(struct ct_key *k, __u32 saddr, __u32 daddr, __u16 sport,
				      __u16 dport, __u8 proto, __u8 dir)
{
	k->saddr = saddr;
	k->daddr = daddr;
	k->sport = sport;
	k->dport = dport;
	k->proto = proto;
	k->dir = dir;
	k->pad = 0;
}

/* Timeouts in seconds; 0 = the default below. Index 0 of the config map. */
struct lb_config {
	__u32 tcp_syn_s;
	__u32 tcp_established_s;
	__u32 tcp_closing_s;
	__u32 udp_s;
};

#define DEFAULT_TCP_SYN_S 60
#define DEFAULT_TCP_ESTABLISHED_S 21600
#define DEFAULT_TCP_CLOSING_S 10
#define DEFAULT_UDP_S 60

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_config);
	PIN;
} lb_config SEC(".maps");

/* TCP by state; UDP and every other protocol by idle time. */
static __always_inline __u64 timeout_ns(__u8 proto, __u32 flags)
{
	__u32 zero = 0;
	struct lb_config *c = bpf_map_lookup_elem(&lb_config, &zero);
	__u32 s;

	if (proto != IPPROTO_TCP)
		s = c && c->udp_s ? c->udp_s : DEFAULT_UDP_S;
	else if (flags & CT_CLOSING)
		s = c && c->tcp_closing_s ? c->tcp_closing_s : DEFAULT_TCP_CLOSING_S;
	else if (flags & CT_SYN_ONLY)
		s = c && c->tcp_syn_s ? c->tcp_syn_s : DEFAULT_TCP_SYN_S;
	else
		s = c && c->tcp_established_s ? c->tcp_established_s : DEFAULT_TCP_ESTABLISHED_S;
	return s * NSEC;
}

/* The flags a new entry starts with, for the packet that opens it. */
static __always_inline __u32 first_flags(const struct packet *p)
{
	return p->ip.protocol == IPPROTO_TCP && (p->tcp_flags & F_SYN) ? CT_SYN_ONLY : 0;
}

/* The entry's flags after a packet with `tcp_flags`: FIN/RST make it closing for good;
 * a SYN keeps the short handshake timeout until any other packet is seen. */
static __always_inline __u32 next_flags(__u32 flags, __u8 tcp_flags)
{
	if (tcp_flags & (F_FIN | F_RST))
		return (flags | CT_CLOSING) & ~CT_SYN_ONLY;
	if (tcp_flags & F_SYN)
		return flags;
	return flags & ~CT_SYN_ONLY;
}

/* An entry after a packet with `tcp_flags`: its new state and expiry. */
static __always_inline void refresh(__u32 *flags, __u64 *expires_ns, __u8 proto, __u8 tcp_flags,
				    __u64 now)
{
	*flags = next_flags(*flags, tcp_flags);
	*expires_ns = now + timeout_ns(proto, *flags);
}

#endif
