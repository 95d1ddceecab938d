// SPDX-License-Identifier: GPL-2.0
/* NetworkPolicy on a pod's own interface (tc clsact, direct action), around the LB:
 *
 * ingress: pol_ingress (priority 0x80) runs before lb_ingress's reverse NAT, so it sees
 *          the real peer (the backend);
 * egress:  pol_egress (0x200) runs after lb_egress's DNAT, so it sees the backend too.
 *
 * Every connection is tracked (pol_conntrack), isolated or not, under the hook that
 * admitted it: its later packets and its replies pass at once, so an established
 * connection outlives a policy that would deny it. A TCP SYN without ACK is always
 * evaluated afresh, so every new connection meets the policy of the moment.
 */
#include "policy.h"

char LICENSE[] SEC("license") = "GPL";

static __always_inline void pcount(__u32 which)
{
	bump(&pol_counters, which);
}

/* A live entry for `k`: 1 (refreshed by this packet if `touch`), else 0. */
static __always_inline int tracked(struct ct_key *k, const struct packet *p, __u64 now,
				   int touch)
{
	struct pol_ct_value *v = bpf_map_lookup_elem(&pol_conntrack, k);

	if (!v || v->expires_ns <= now)
		return 0;
	if (touch)
		refresh(&v->flags, &v->expires_ns, k->proto, p->tcp_flags, now);
	return 1;
}

/* The packet belongs to a connection admitted here, or is the reply of one the other
 * hook admitted (the local pod's other direction). */
static __always_inline int established(const struct packet *p, __u8 hook, __u64 now,
				       int touch)
{
	struct ct_key k;

	ct_key_of(&k, p->ip.saddr, p->ip.daddr, p->sport, p->dport, p->ip.protocol, hook);
	if (tracked(&k, p, now, touch))
		return 1;
	ct_key_of(&k, p->ip.daddr, p->ip.saddr, p->dport, p->sport, p->ip.protocol, !hook);
	return tracked(&k, p, now, touch);
}

/* An ICMP error about a tracked connection (as iptables' RELATED): the packet it quotes
 * went the other way, through the pod's other hook. It refreshes nothing. */
static __always_inline int related(struct __sk_buff *skb, __u8 hook, __u64 now)
{
	struct packet q;

	return !quoted(skb, &q) && established(&q, !hook, now, 0);
}

static __always_inline void track(const struct packet *p, __u8 hook, __u64 now)
{
	struct pol_ct_value v = { .flags = next_flags(first_flags(p), p->tcp_flags) };
	struct ct_key k;

	ct_key_of(&k, p->ip.saddr, p->ip.daddr, p->sport, p->dport, p->ip.protocol, hook);
	v.expires_ns = now + timeout_ns(p->ip.protocol, v.flags);
	if (bpf_map_update_elem(&pol_conntrack, &k, &v, BPF_ANY))
		pcount(P_CT_FULL);
}

static __always_inline __u32 lookup_u32(void *map, const void *key)
{
	__u32 *v = bpf_map_lookup_elem(map, key);

	return v ? *v : 0;
}

/* Does a rule of `rules` allow `identity` on this packet's protocol and destination port?
 * Packets without ports look up port 0, which only port-less rules cover. */
static __always_inline int allows(void *rules, __u32 identity, const struct packet *p)
{
	struct pol_rule_key k = {
		.prefixlen = RULE_KEY_BITS,
		.identity = bpf_htonl(identity),
		.proto = p->ip.protocol,
		.port = p->dport,
	};

	return bpf_map_lookup_elem(rules, &k) != NULL;
}

static __always_inline void emit(const struct packet *p, __u8 hook, __u32 local_id,
				 __u32 peer_id, __u8 verdict, __u8 reason)
{
	struct pol_event e = {
		.ts_ns = bpf_ktime_get_ns(),
		.saddr = p->ip.saddr,
		.daddr = p->ip.daddr,
		.sport = p->sport,
		.dport = p->dport,
		.src_identity = hook == POL_INGRESS ? peer_id : local_id,
		.dst_identity = hook == POL_INGRESS ? local_id : peer_id,
		.endpoint = hook == POL_INGRESS ? p->ip.daddr : p->ip.saddr,
		.proto = p->ip.protocol,
		.direction = hook,
		.verdict = verdict,
		.reason = reason,
	};

	if (bpf_ringbuf_output(&pol_events, &e, sizeof(e), 0))
		pcount(P_EVENTS_LOST);
}

static __always_inline int sampled(void)
{
	__u32 zero = 0;
	struct pol_config *c = bpf_map_lookup_elem(&pol_config, &zero);

	return c && c->allow_every && bpf_get_prandom_u32() % c->allow_every == 0;
}

/* A packet no conntrack entry lets through: the verdict of the local pod's rules. */
static __always_inline int enforce(struct __sk_buff *skb, __u8 hook)
{
	void *outer = hook == POL_INGRESS ? (void *)&pol_ingress_map : (void *)&pol_egress_map;
	__u32 has_rules = hook == POL_INGRESS ? POL_INGRESS_RULES : POL_EGRESS_RULES;
	struct pol_cidr_key ck = { .prefixlen = 32 };
	__u32 local, peer, pod_id, cidr_id, peer_id, local_id;
	struct packet p;
	void *rules;
	__u64 now;
	__u8 reason;
	int kind;

	kind = parse(skb, &p);
	if (kind == PKT_NOT_IPV4)
		return PASS;
	now = bpf_ktime_get_ns();
	if ((!is_syn(&p) && established(&p, hook, now, 1)) ||
	    (kind == PKT_ICMP && related(skb, hook, now))) {
		pcount(R_ESTABLISHED);
		return PASS;
	}
	local = hook == POL_INGRESS ? p.ip.daddr : p.ip.saddr;
	peer = hook == POL_INGRESS ? p.ip.saddr : p.ip.daddr;
	ck.addr = peer;
	pod_id = lookup_u32(&pol_ipcache, &peer);
	cidr_id = lookup_u32(&pol_cidrs, &ck);
	rules = bpf_map_lookup_elem(outer, &local);
	if (!rules)
		reason = R_NOT_ISOLATED;
	else if (pod_id == HOST_IDENTITY)
		reason = R_HOST;
	else if ((pod_id && allows(rules, pod_id, &p)) || (cidr_id && allows(rules, cidr_id, &p)) ||
		 allows(rules, ANY_IDENTITY, &p))
		reason = R_POLICY_ALLOWS;
	else
		reason = lookup_u32(&pol_flags, &local) & has_rules ? R_NO_POLICY_ALLOWS
								      : R_DEFAULT_DENY;
	pcount(reason);
	if (reason >= R_POLICY_ALLOWS) {
		track(&p, hook, now);
		if (!sampled())
			return PASS;
	}
	peer_id = pod_id ? pod_id : cidr_id ? cidr_id : WORLD_IDENTITY;
	local_id = lookup_u32(&pol_ipcache, &local);
	emit(&p, hook, local_id ? local_id : WORLD_IDENTITY, peer_id,
	     reason >= R_POLICY_ALLOWS ? V_ALLOWED : V_DROPPED, reason);
	return reason >= R_POLICY_ALLOWS ? PASS : TC_ACT_SHOT;
}

SEC("tc")
int pol_ingress(struct __sk_buff *skb)
{
	if (skb->mark == MARK_TURNED) {
		skb->mark = 0;
		pcount(R_SELF);
		return PASS;
	}
	return enforce(skb, POL_INGRESS);
}

SEC("tc")
int pol_egress(struct __sk_buff *skb)
{
	return enforce(skb, POL_EGRESS);
}
