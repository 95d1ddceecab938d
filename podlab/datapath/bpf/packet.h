/* Reading a packet's headers, shared by the tc programs (tc_lb.c, tc_policy.c).
 *
 * Headers are read with bpf_skb_load_bytes into the stack, never through packet pointers:
 * the helpers that rewrite checksums invalidate those. Fixed offsets: IPv4 without options.
 */
#ifndef PODLAB_PACKET_H
#define PODLAB_PACKET_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define IP_OFF ETH_HLEN
#define IP_CHECK (IP_OFF + 10)
#define IP_SADDR (IP_OFF + 12)
#define IP_DADDR (IP_OFF + 16)
#define L4_OFF (IP_OFF + 20)
#define L4_SPORT L4_OFF
#define L4_DPORT (L4_OFF + 2)
#define TCP_FLAGS (L4_OFF + 13)
#define INNER_IP (L4_OFF + 8)       /* the packet an ICMP error quotes */
#define INNER_L4 (INNER_IP + 20)

/* linux/icmp.h drags in libc's socket headers, which have no BPF target. */
#define ICMP_DEST_UNREACH 3
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12

struct icmphdr {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__u32 rest;
};

#define F_FIN 0x01
#define F_SYN 0x02
#define F_RST 0x04
#define F_ACK 0x10

/* A program that lets a packet through says UNSPEC, so the next filter on the hook runs
 * (clsact passes a packet when its last filter says UNSPEC); TC_ACT_OK would end the chain. */
#define PASS TC_ACT_UNSPEC

/* skb->mark of a packet the LB turned back into its own pod (hairpin, rejects): ingress
 * policy lets it in, a pod may always reach itself. Marks do not survive a netns crossing
 * (skb_scrub_packet), so no other pod can send one. */
#define MARK_TURNED 0x0b9f0001

struct packet {
	struct iphdr ip;
	__u16 sport;
	__u16 dport;
	__u8 tcp_flags;
};

enum packet_kind {
	PKT_PORTS = 0,      /* TCP or UDP, no options, not a fragment: ports and flags read */
	PKT_ICMP = 1,       /* ICMP, no options, not a fragment */
	PKT_OTHER = 2,      /* any other IPv4: other protocols, options, fragments, truncated
			     * TCP/UDP headers (no ports) */
	PKT_NOT_IPV4 = -1,  /* or an unreadable IPv4 header: left alone */
};

static __always_inline int parse(struct __sk_buff *skb, struct packet *p)
{
	p->sport = 0;
	p->dport = 0;
	p->tcp_flags = 0;
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return PKT_NOT_IPV4;
	if (bpf_skb_load_bytes(skb, IP_OFF, &p->ip, sizeof(p->ip)) || p->ip.version != 4)
		return PKT_NOT_IPV4;
	if (p->ip.ihl != 5 || (p->ip.frag_off & bpf_htons(0x3fff)))
		return PKT_OTHER;
	if (p->ip.protocol == IPPROTO_ICMP)
		return PKT_ICMP;
	if (p->ip.protocol != IPPROTO_TCP && p->ip.protocol != IPPROTO_UDP)
		return PKT_OTHER;
	if (bpf_skb_load_bytes(skb, L4_SPORT, &p->sport, 4) ||
	    (p->ip.protocol == IPPROTO_TCP && bpf_skb_load_bytes(skb, TCP_FLAGS, &p->tcp_flags, 1))) {
		p->sport = 0;   /* a truncated header: no ports to trust */
		p->dport = 0;
		return PKT_OTHER;
	}
	return PKT_PORTS;
}

/* For an ICMP error (unreachable, time exceeded, parameter problem) quoting a TCP or UDP
 * packet: that packet's header and ports in `q`, and 0. */
static __always_inline int quoted(struct __sk_buff *skb, struct packet *q)
{
	struct icmphdr icmp;

	if (bpf_skb_load_bytes(skb, L4_OFF, &icmp, sizeof(icmp)))
		return -1;
	if (icmp.type != ICMP_DEST_UNREACH && icmp.type != ICMP_TIME_EXCEEDED &&
	    icmp.type != ICMP_PARAMETERPROB)
		return -1;
	if (bpf_skb_load_bytes(skb, INNER_IP, &q->ip, sizeof(q->ip)) || q->ip.ihl != 5 ||
	    (q->ip.protocol != IPPROTO_TCP && q->ip.protocol != IPPROTO_UDP) ||
	    bpf_skb_load_bytes(skb, INNER_L4, &q->sport, 4))
		return -1;
	q->tcp_flags = 0;
	return 0;
}

/* A TCP handshake's first packet: always a new connection, whatever conntrack holds. */
static __always_inline int is_syn(const struct packet *p)
{
	return p->ip.protocol == IPPROTO_TCP && (p->tcp_flags & (F_SYN | F_ACK)) == F_SYN;
}

#endif
