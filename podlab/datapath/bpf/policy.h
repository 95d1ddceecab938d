/* NetworkPolicy's maps (tc_policy.c), mirrored field for field in policy_schemas.py.
 *
 * Identities, not labels: a peer is its pod's identity (pol_ipcache, exact address) and
 * the identity of the longest ipBlock prefix holding it (pol_cidrs). A local pod's rules
 * per direction are an LPM trie of (identity, protocol, port prefix), found by the pod's
 * address in pol_ingress_map / pol_egress_map (the programs have the short names); a pod
 * without an entry there is not isolated in that direction.
 * Addresses, identities in rule keys and ports are in network byte order.
 */
#ifndef PODLAB_POLICY_H
#define PODLAB_POLICY_H

#include "ct.h"

/* policy_model.py's reserved identities. */
#define ANY_IDENTITY 0
#define HOST_IDENTITY 1
#define WORLD_IDENTITY 2

/* The local pod's direction; also ct_key.dir of a policy conntrack entry: the hook that
 * admitted the connection. */
enum pol_dir { POL_INGRESS = 0, POL_EGRESS = 1 };

struct pol_cidr_key {
	__u32 prefixlen;
	__u32 addr;
};

/* One allow rule: prefixlen 32 = every protocol and port of `identity`, 40 = every port of
 * `proto`, 40 + n = the ports whose first n bits are `port`'s (a range is several). */
struct pol_rule_key {
	__u32 prefixlen;
	__u32 identity;
	__u8 proto;
	__u16 port;
} __attribute__((packed));

#define RULE_KEY_BITS 56

/* pol_flags: a pod's directions that have rules; isolated without them is default deny. */
enum pol_flag { POL_INGRESS_RULES = 1, POL_EGRESS_RULES = 2 };

struct pol_ct_value {
	__u32 flags;        /* ct.h's CT_CLOSING, CT_SYN_ONLY */
	__u32 pad;
	__u64 expires_ns;
};

/* Index 0 of pol_config. */
struct pol_config {
	__u32 allow_every;  /* one event per N allowed new connections, at random; 0 = none */
};

/* Why a packet was dropped or let through: a flow's reason and a counter each. The drops
 * come first: a reason from R_POLICY_ALLOWS on is an allow. */
enum pol_reason {
	R_DEFAULT_DENY = 0,     /* dropped: isolated, and no rule for the direction */
	R_NO_POLICY_ALLOWS,     /* dropped: rules, none for this peer, protocol and port */
	R_POLICY_ALLOWS,        /* a new connection a rule allows */
	R_NOT_ISOLATED,         /* a new connection of a direction no policy isolates */
	R_HOST,                 /* a new connection from or to the pod's own node */
	R_SELF,                 /* a packet the LB turned back into its own pod */
	R_ESTABLISHED,          /* a packet of a live connection, its reply, an ICMP error about it */
	R_MAX,
};

enum pol_counter {
	P_CT_FULL = R_MAX,      /* allowed, but conntrack refused the entry */
	P_EVENTS_LOST,          /* the ring buffer was full */
	P_MAX,
};

enum pol_verdict { V_DROPPED = 0, V_ALLOWED = 1 };

struct pol_event {
	__u64 ts_ns;        /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 endpoint;     /* the local pod's address */
	__u8 proto;
	__u8 direction;     /* enum pol_dir */
	__u8 verdict;       /* enum pol_verdict */
	__u8 reason;        /* enum pol_reason */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u32);
	PIN;
} pol_ipcache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pol_cidr_key);
	__type(value, __u32);
	PIN;
} pol_cidrs SEC(".maps");

/* The inner maps' shape; each is created by Python, sized to its rules. Sizes, not
 * types: clang's BTF has only a forward declaration for a type this deep. */
struct pol_rules {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(key_size, sizeof(struct pol_rule_key));
	__uint(value_size, sizeof(__u8));
};

#define RULES_BY_POD(name)                          \
	struct {                                    \
		__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS); \
		__uint(max_entries, 4096);          \
		__type(key, __u32);                 \
		PIN;                                \
		__array(values, struct pol_rules);  \
	} name SEC(".maps")

RULES_BY_POD(pol_ingress_map);
RULES_BY_POD(pol_egress_map);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
	PIN;
} pol_flags SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, struct ct_key);
	__type(value, struct pol_ct_value);
	PIN;
} pol_conntrack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
	PIN;
} pol_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pol_config);
	PIN;
} pol_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, P_MAX);
	__type(key, __u32);
	__type(value, __u64);
	PIN;
} pol_counters SEC(".maps");

#endif
