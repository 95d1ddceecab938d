/* Maps and backend selection shared by tc_lb.c (pod interface) and sock_lb.c (node sockets).
 *
 * Both objects declare every map pinned by name, so whichever loads second adopts the
 * first's maps. The layouts are mirrored, field for field, in schemas.py. Addresses and
 * ports are in network byte order everywhere, as they sit in the packet.
 */
#ifndef PODLAB_LB_H
#define PODLAB_LB_H

#include "ct.h"

/* One (ClusterIP, port, protocol): the entry a flip of which switches a backend set. */
struct svc_key {
	__u32 vip;
	__u16 port;
	__u8 proto;
	__u8 pad;
};

struct svc_value {
	__u32 id;           /* stable per svc_key, names its backend slots and affinity */
	__u16 rev;          /* which slot generation is live */
	__u16 count;        /* live backends; 0 = reject */
	__u32 affinity_s;   /* sessionAffinity ClientIP timeout, 0 = none */
};

struct backend_key {
	__u32 id;
	__u16 rev;
	__u16 index;        /* 0 .. count-1, so a pick is one random number and one lookup */
};

struct backend {
	__u32 ip;
	__u16 port;
	__u16 pad;
};

/* A backend of a service's live set; affinity trusts a remembered backend only if listed. */
struct member_key {
	__u32 id;
	__u32 ip;
	__u16 port;
	__u16 pad;
};

struct affinity_key {
	__u32 id;
	__u32 client;
};

struct affinity_value {
	struct backend backend;
	__u64 last_ns;
};

/* Conntrack (key: ct.h's ct_key): which way a tuple goes. */
enum ct_dir { CT_FORWARD = 0, CT_REPLY = 1 };

/* FORWARD: addr/port = the backend. REPLY: addr/port = the VIP and service port, and
 * peer/peer_port = the client (used by the hairpin turn). */
struct ct_value {
	__u32 addr;
	__u16 port;
	__u16 peer_port;
	__u32 peer;
	__u32 flags;
	__u64 expires_ns;   /* bpf_ktime_get_ns() clock, CLOCK_MONOTONIC */
};

enum counter {
	C_TRANSLATED = 0,       /* forward packets DNATed to a backend */
	C_REVERSED,             /* reply packets given back the VIP */
	C_NEW_CONNECTION,       /* backend picks (conntrack entries created) */
	C_HAIRPIN,              /* packets turned back into the pod */
	C_ICMP_TRANSLATED,      /* ICMP errors about a translated flow, translated back */
	C_REJECT_TCP,           /* no backend: RST sent */
	C_REJECT_UDP,           /* no backend: ICMP port unreachable sent */
	C_DROP_MALFORMED,       /* headers unreadable or unwritable */
	C_DROP_NO_BACKEND_SLOT, /* a service's slot missing (never, if updates are ordered) */
	C_DROP_CT_FULL,         /* conntrack write refused */
	C_SOCK_TRANSLATED,      /* connect/sendmsg rewritten by the socket LB */
	C_SOCK_REJECTED,        /* socket LB: service without backends */
	C_SOCK_REVERSED,        /* recvmsg given back the VIP */
	C_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct svc_key);
	__type(value, struct svc_value);
	PIN;
} lb_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct backend_key);
	__type(value, struct backend);
	PIN;
} lb_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct member_key);
	__type(value, __u8);
	PIN;
} lb_members SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct affinity_key);
	__type(value, struct affinity_value);
	PIN;
} lb_affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, struct ct_key);
	__type(value, struct ct_value);
	PIN;
} lb_conntrack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_MAX);
	__type(key, __u32);
	__type(value, __u64);
	PIN;
} lb_counters SEC(".maps");

static __always_inline void count(__u32 which)
{
	bump(&lb_counters, which);
}

/* Is `b` still one of service `id`'s live backends? */
static __always_inline int is_member(__u32 id, const struct backend *b)
{
	struct member_key m = { .id = id, .ip = b->ip, .port = b->port };

	return bpf_map_lookup_elem(&lb_members, &m) != NULL;
}

/* The backend for a new connection of `client` to `svc`: the remembered one under
 * ClientIP affinity while it is live and fresh, else one of the live set uniformly.
 * Returns 0 on success. */
static __always_inline int pick_backend(const struct svc_value *svc, __u32 client,
					struct backend *out)
{
	__u64 now = bpf_ktime_get_ns();
	struct affinity_key ak = { .id = svc->id, .client = client };
	struct backend_key bk = { .id = svc->id, .rev = svc->rev };
	struct affinity_value *av;
	struct backend *b;

	if (svc->affinity_s) {
		av = bpf_map_lookup_elem(&lb_affinity, &ak);
		if (av && now - av->last_ns < svc->affinity_s * NSEC && is_member(svc->id, &av->backend)) {
			*out = av->backend;
			av->last_ns = now;
			return 0;
		}
	}
	bk.index = bpf_get_prandom_u32() % svc->count;
	b = bpf_map_lookup_elem(&lb_backends, &bk);
	if (!b)
		return -1;
	*out = *b;
	if (svc->affinity_s) {
		struct affinity_value fresh = { .backend = *b, .last_ns = now };

		bpf_map_update_elem(&lb_affinity, &ak, &fresh, BPF_ANY);
	}
	return 0;
}

#endif
