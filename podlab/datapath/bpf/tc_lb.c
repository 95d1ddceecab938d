// SPDX-License-Identifier: GPL-2.0
/* ClusterIP load balancing on a pod's own interface (tc clsact, direct action).
 *
 * egress  (packets from the pod): DNAT to a backend, conntrack, reject without backends,
 *         hairpin turn when the pod is its own backend;
 * ingress (packets to the pod):   reverse NAT of replies and of ICMP errors about them.
 *
 * Headers are written back by offset, never through packet pointers (packet.h): the
 * verifier also rejects arithmetic on pointers clang has merged across branches.
 * IPv4 without options only; fragments and anything else pass untouched. A pass is
 * PASS (UNSPEC), so NetworkPolicy's filters after ours run (tc_policy.c).
 */
#include <linux/tcp.h>
#include <linux/udp.h>
#include "lb.h"

#define ICMP_CHECK (L4_OFF + 2)
#define ICMP_PORT_UNREACH 3

char LICENSE[] SEC("license") = "GPL";

static __always_inline __u16 fold(__s64 sum)
{
	__u32 s = (__u32)sum;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* ---- conntrack ---- */

static __always_inline void touch(struct ct_key *key, __u64 now, __u8 tcp_flags)
{
	struct ct_value *v = bpf_map_lookup_elem(&lb_conntrack, key);

	if (v)
		refresh(&v->flags, &v->expires_ns, key->proto, tcp_flags, now);
}

static __always_inline int live(const struct ct_value *v, __u64 now)
{
	return v->expires_ns > now;
}

/* ---- rewriting ---- */

static __always_inline int l4_check_off(__u8 proto)
{
	return proto == IPPROTO_TCP ? L4_OFF + 16 : L4_OFF + 6;
}

static __always_inline __u64 l4_mangle(__u8 proto)
{
	return proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

static __always_inline int set_addr(struct __sk_buff *skb, __u8 proto, int off, __u32 old, __u32 new)
{
	if (bpf_l4_csum_replace(skb, l4_check_off(proto), old, new,
				BPF_F_PSEUDO_HDR | l4_mangle(proto) | sizeof(new)))
		return -1;
	if (bpf_l3_csum_replace(skb, IP_CHECK, old, new, sizeof(new)))
		return -1;
	return bpf_skb_store_bytes(skb, off, &new, sizeof(new), 0);
}

static __always_inline int set_port(struct __sk_buff *skb, __u8 proto, int off, __u16 old, __u16 new)
{
	if (bpf_l4_csum_replace(skb, l4_check_off(proto), old, new, l4_mangle(proto) | sizeof(new)))
		return -1;
	return bpf_skb_store_bytes(skb, off, &new, sizeof(new), 0);
}

/* Deliver the (rewritten) packet back into the pod, as if it had come from the gateway,
 * marked as the pod's own so that ingress policy lets it in. */
static __always_inline int turn(struct __sk_buff *skb)
{
	__u8 macs[12], swapped[12];

	if (bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)))
		return TC_ACT_SHOT;
	__builtin_memcpy(swapped, macs + 6, 6);
	__builtin_memcpy(swapped + 6, macs, 6);
	if (bpf_skb_store_bytes(skb, 0, swapped, sizeof(swapped), 0))
		return TC_ACT_SHOT;
	skb->mark = MARK_TURNED;
	return bpf_redirect(skb->ifindex, BPF_F_INGRESS);
}

static __always_inline int drop(__u32 reason)
{
	count(reason);
	return TC_ACT_SHOT;
}

/* No backend, TCP: answer with RST (ACK|RST to a SYN), as kube-proxy's REJECT does. */
static __always_inline int reject_tcp(struct __sk_buff *skb, struct packet *p)
{
	struct tcphdr in, out = {};
	struct { __u32 saddr, daddr; __u8 zero, proto; __u16 len; } pseudo;
	struct iphdr ip = {};
	__u32 payload;
	__s64 sum;

	if (bpf_skb_load_bytes(skb, L4_OFF, &in, sizeof(in)))
		return drop(C_DROP_MALFORMED);
	if (in.rst)
		return TC_ACT_SHOT;
	payload = bpf_ntohs(p->ip.tot_len) - sizeof(struct iphdr) - in.doff * 4;
	out.source = in.dest;
	out.dest = in.source;
	out.doff = 5;
	out.rst = 1;
	if (in.ack) {
		out.seq = in.ack_seq;
	} else {
		out.ack = 1;
		out.ack_seq = bpf_htonl(bpf_ntohl(in.seq) + payload + in.syn + in.fin);
	}
	ip.version = 4;
	ip.ihl = 5;
	ip.tot_len = bpf_htons(sizeof(ip) + sizeof(out));
	ip.ttl = 64;
	ip.protocol = IPPROTO_TCP;
	ip.saddr = p->ip.daddr;
	ip.daddr = p->ip.saddr;
	ip.check = fold(bpf_csum_diff(0, 0, (__be32 *)&ip, sizeof(ip), 0));
	pseudo.saddr = ip.saddr;
	pseudo.daddr = ip.daddr;
	pseudo.zero = 0;
	pseudo.proto = IPPROTO_TCP;
	pseudo.len = bpf_htons(sizeof(out));
	sum = bpf_csum_diff(0, 0, (__be32 *)&pseudo, sizeof(pseudo), 0);
	out.check = fold(bpf_csum_diff(0, 0, (__be32 *)&out, sizeof(out), (__u32)sum));
	if (bpf_skb_change_tail(skb, ETH_HLEN + sizeof(ip) + sizeof(out), 0) ||
	    bpf_skb_store_bytes(skb, IP_OFF, &ip, sizeof(ip), 0) ||
	    bpf_skb_store_bytes(skb, L4_OFF, &out, sizeof(out), 0))
		return drop(C_DROP_MALFORMED);
	count(C_REJECT_TCP);
	return turn(skb);
}

/* No backend, UDP: answer with ICMP port unreachable quoting the datagram's first 28 bytes. */
static __always_inline int reject_udp(struct __sk_buff *skb, struct packet *p)
{
	struct {
		struct iphdr ip;
		struct icmphdr icmp;
		__u8 quote[28];
	} out = {};

	if (bpf_skb_load_bytes(skb, IP_OFF, out.quote, sizeof(out.quote)))
		return drop(C_DROP_MALFORMED);
	out.ip.version = 4;
	out.ip.ihl = 5;
	out.ip.tos = 0xc0;
	out.ip.tot_len = bpf_htons(sizeof(out));
	out.ip.ttl = 64;
	out.ip.protocol = IPPROTO_ICMP;
	out.ip.saddr = p->ip.daddr;
	out.ip.daddr = p->ip.saddr;
	out.ip.check = fold(bpf_csum_diff(0, 0, (__be32 *)&out.ip, sizeof(out.ip), 0));
	out.icmp.type = ICMP_DEST_UNREACH;
	out.icmp.code = ICMP_PORT_UNREACH;
	out.icmp.checksum = fold(bpf_csum_diff(0, 0, (__be32 *)&out.icmp,
					       sizeof(out.icmp) + sizeof(out.quote), 0));
	if (bpf_skb_adjust_room(skb, sizeof(out.ip) + sizeof(out.icmp), BPF_ADJ_ROOM_MAC, 0) ||
	    bpf_skb_change_tail(skb, ETH_HLEN + sizeof(out), 0) ||
	    bpf_skb_store_bytes(skb, IP_OFF, &out, sizeof(out), 0))
		return drop(C_DROP_MALFORMED);
	count(C_REJECT_UDP);
	return turn(skb);
}

/* A hairpinned connection's reply, leaving the pod (as backend) towards the VIP it was
 * SNATed to: rewrite it into the reply the pod (as client) expects and turn it back in. */
static __always_inline int hairpin_reply(struct __sk_buff *skb, struct packet *p,
					 struct ct_key *rk, struct ct_value *rv, __u64 now)
{
	__u32 vip = rv->addr, client = rv->peer;
	__u16 vport = rv->port, cport = rv->peer_port;
	__u8 proto = p->ip.protocol;
	struct ct_key fk;

	ct_key_of(&fk, client, vip, cport, vport, proto, CT_FORWARD);
	touch(rk, now, p->tcp_flags);
	touch(&fk, now, p->tcp_flags);
	if (set_addr(skb, proto, IP_SADDR, p->ip.saddr, vip) ||
	    set_addr(skb, proto, IP_DADDR, p->ip.daddr, client) ||
	    set_port(skb, proto, L4_SPORT, p->sport, vport))
		return drop(C_DROP_MALFORMED);
	count(C_HAIRPIN);
	return turn(skb);
}

/* Where a backend's replies go: the client, or the VIP the client was SNATed to when it
 * is its own backend (hairpin). */
static __always_inline __u32 reply_to(const struct packet *p, __u32 hairpin)
{
	return hairpin ? p->ip.daddr : p->ip.saddr;
}

/* A new connection to `svc`: pick a backend and record both directions; 0 or a verdict. */
static __always_inline int open_connection(struct packet *p, struct ct_key *fk,
					   struct svc_value *svc, __u64 now, struct backend *b,
					   __u32 *hairpin)
{
	__u8 proto = p->ip.protocol;
	__u32 flags = first_flags(p);
	struct ct_value fwd = {}, rev = {};
	struct ct_key rk;

	if (pick_backend(svc, p->ip.saddr, b))
		return drop(C_DROP_NO_BACKEND_SLOT);
	*hairpin = b->ip == p->ip.saddr ? CT_HAIRPIN : 0;
	flags = next_flags(flags | *hairpin, p->tcp_flags);
	ct_key_of(&rk, b->ip, reply_to(p, *hairpin), b->port, p->sport, proto, CT_REPLY);
	fwd.addr = b->ip;
	fwd.port = b->port;
	fwd.flags = flags;
	fwd.expires_ns = now + timeout_ns(proto, flags);
	rev.addr = p->ip.daddr;
	rev.port = p->dport;
	rev.peer = p->ip.saddr;
	rev.peer_port = p->sport;
	rev.flags = flags;
	rev.expires_ns = fwd.expires_ns;
	if (bpf_map_update_elem(&lb_conntrack, &rk, &rev, BPF_ANY) ||
	    bpf_map_update_elem(&lb_conntrack, fk, &fwd, BPF_ANY))
		return drop(C_DROP_CT_FULL);
	count(C_NEW_CONNECTION);
	return 0;
}

SEC("tc")
int lb_egress(struct __sk_buff *skb)
{
	struct packet p;
	struct ct_key fk, rk;
	struct svc_key sk = {};
	struct svc_value svc;
	struct svc_value *sv;
	struct ct_value *cv;
	struct backend b;
	__u32 hairpin = 0;
	__u64 now;
	__u8 proto;
	int ret;

	if (parse(skb, &p) != PKT_PORTS)
		return PASS;
	proto = p.ip.protocol;
	now = bpf_ktime_get_ns();
	ct_key_of(&rk, p.ip.saddr, p.ip.daddr, p.sport, p.dport, proto, CT_REPLY);
	cv = bpf_map_lookup_elem(&lb_conntrack, &rk);
	if (cv && (cv->flags & CT_HAIRPIN) && live(cv, now))
		return hairpin_reply(skb, &p, &rk, cv, now);

	sk.vip = p.ip.daddr;
	sk.port = p.dport;
	sk.proto = proto;
	sv = bpf_map_lookup_elem(&lb_services, &sk);
	if (!sv)
		return PASS;
	svc = *sv;

	fk = rk;
	fk.dir = CT_FORWARD;
	cv = bpf_map_lookup_elem(&lb_conntrack, &fk);
	if (cv && live(cv, now) &&
	    !((cv->flags & CT_CLOSING) && (p.tcp_flags & (F_SYN | F_ACK)) == F_SYN)) {
		b.ip = cv->addr;
		b.port = cv->port;
		hairpin = cv->flags & CT_HAIRPIN;
		touch(&fk, now, p.tcp_flags);
		ct_key_of(&rk, b.ip, reply_to(&p, hairpin), b.port, p.sport, proto, CT_REPLY);
		touch(&rk, now, p.tcp_flags);
	} else {
		if (svc.count == 0)
			return proto == IPPROTO_TCP ? reject_tcp(skb, &p) : reject_udp(skb, &p);
		ret = open_connection(&p, &fk, &svc, now, &b, &hairpin);
		if (ret)
			return ret;
	}
	if (set_addr(skb, proto, IP_DADDR, p.ip.daddr, b.ip) ||
	    set_port(skb, proto, L4_DPORT, p.dport, b.port))
		return drop(C_DROP_MALFORMED);
	count(C_TRANSLATED);
	if (!hairpin)
		return PASS;
	if (set_addr(skb, proto, IP_SADDR, p.ip.saddr, p.ip.daddr))
		return drop(C_DROP_MALFORMED);
	count(C_HAIRPIN);
	return turn(skb);
}

/* An ICMP error quoting a packet we DNATed (client -> backend): make it quote the packet
 * the client sent (client -> VIP), and come from the VIP if the backend sent it. The
 * quoted L4 checksum is left as is; receivers do not check it. */
static __always_inline int icmp_error(struct __sk_buff *skb, struct packet *p)
{
	struct packet q;
	struct iphdr inner;
	__u16 old_check, new_check;
	struct ct_key rk;
	struct ct_value *rv;
	__u32 vip;
	__u16 vport;

	if (quoted(skb, &q))
		return PASS;
	inner = q.ip;
	ct_key_of(&rk, inner.daddr, inner.saddr, q.dport, q.sport, inner.protocol, CT_REPLY);
	rv = bpf_map_lookup_elem(&lb_conntrack, &rk);
	if (!rv || (rv->flags & CT_HAIRPIN))
		return PASS;
	vip = rv->addr;
	vport = rv->port;
	old_check = inner.check;
	if (bpf_l3_csum_replace(skb, INNER_IP + 10, inner.daddr, vip, sizeof(vip)) ||
	    bpf_skb_load_bytes(skb, INNER_IP + 10, &new_check, sizeof(new_check)) ||
	    bpf_l4_csum_replace(skb, ICMP_CHECK, inner.daddr, vip, sizeof(vip)) ||
	    bpf_l4_csum_replace(skb, ICMP_CHECK, old_check, new_check, sizeof(new_check)) ||
	    bpf_l4_csum_replace(skb, ICMP_CHECK, q.dport, vport, sizeof(vport)) ||
	    bpf_skb_store_bytes(skb, INNER_IP + 16, &vip, sizeof(vip), 0) ||
	    bpf_skb_store_bytes(skb, INNER_L4 + 2, &vport, sizeof(vport), 0))
		return drop(C_DROP_MALFORMED);
	if (p->ip.saddr == inner.daddr &&
	    (bpf_l3_csum_replace(skb, IP_CHECK, p->ip.saddr, vip, sizeof(vip)) ||
	     bpf_skb_store_bytes(skb, IP_SADDR, &vip, sizeof(vip), 0)))
		return drop(C_DROP_MALFORMED);
	count(C_ICMP_TRANSLATED);
	return PASS;
}

SEC("tc")
int lb_ingress(struct __sk_buff *skb)
{
	struct packet p;
	struct ct_key rk, fk;
	struct ct_value *rv;
	__u64 now;
	__u32 vip;
	__u16 vport;
	int kind = parse(skb, &p);

	if (kind == PKT_ICMP)
		return icmp_error(skb, &p);
	if (kind != PKT_PORTS)
		return PASS;
	now = bpf_ktime_get_ns();
	ct_key_of(&rk, p.ip.saddr, p.ip.daddr, p.sport, p.dport, p.ip.protocol, CT_REPLY);
	rv = bpf_map_lookup_elem(&lb_conntrack, &rk);
	if (!rv || (rv->flags & CT_HAIRPIN) || !live(rv, now))
		return PASS;
	vip = rv->addr;
	vport = rv->port;
	touch(&rk, now, p.tcp_flags);
	ct_key_of(&fk, p.ip.daddr, vip, p.dport, vport, p.ip.protocol, CT_FORWARD);
	touch(&fk, now, p.tcp_flags);
	if (set_addr(skb, p.ip.protocol, IP_SADDR, p.ip.saddr, vip) ||
	    set_port(skb, p.ip.protocol, L4_SPORT, p.sport, vport))
		return drop(C_DROP_MALFORMED);
	count(C_REVERSED);
	return PASS;
}
