// SPDX-License-Identifier: GPL-2.0
/* Socket-level ClusterIP load balancing for clients in a node's own netns, where no tc
 * program sees their packets: connect() and UDP sendmsg() get a backend's address before
 * any packet exists, and recvmsg() gives the VIP back to UDP readers.
 *
 * The cgroup hooks are attached once per lab to the cgroup its processes live in; a
 * socket is served only if its netns cookie is in lb_sock_netns, so the host and other
 * labs sharing the cgroup are untouched.
 */
#include <linux/errno.h>
#include "lb.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u8);
	PIN;
} lb_sock_netns SEC(".maps");

/* (socket, backend) -> VIP, for the source address a UDP reader is shown. */
struct sock_rev_key {
	__u64 cookie;
	__u32 ip;
	__u16 port;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sock_rev_key);
	__type(value, struct backend);
	PIN;
} lb_sock_reverse SEC(".maps");

/* All of a node's sockets are one client for ClientIP affinity, as under kube-proxy they
 * all leave with the node's address. */
#define NODE_CLIENT 0

static __always_inline int translate(struct bpf_sock_addr *ctx, int remember)
{
	__u64 netns = bpf_get_netns_cookie(ctx);
	struct svc_key key = {};
	struct svc_value svc;
	struct svc_value *sv;
	struct backend b;

	if (!bpf_map_lookup_elem(&lb_sock_netns, &netns))
		return 1;
	key.vip = ctx->user_ip4;
	key.port = (__u16)ctx->user_port;
	key.proto = (__u8)ctx->protocol;
	sv = bpf_map_lookup_elem(&lb_services, &key);
	if (!sv)
		return 1;
	svc = *sv;
	if (svc.count == 0) {
		count(C_SOCK_REJECTED);
		bpf_set_retval(-ECONNREFUSED);
		return 0;
	}
	if (pick_backend(&svc, NODE_CLIENT, &b))
		return 1;
	if (remember) {
		struct sock_rev_key rk = { .cookie = bpf_get_socket_cookie(ctx), .ip = b.ip,
					   .port = b.port };
		struct backend vip = { .ip = key.vip, .port = key.port };

		bpf_map_update_elem(&lb_sock_reverse, &rk, &vip, BPF_ANY);
	}
	ctx->user_ip4 = b.ip;
	ctx->user_port = b.port;
	count(C_SOCK_TRANSLATED);
	return 1;
}

SEC("cgroup/connect4")
int sock_connect4(struct bpf_sock_addr *ctx)
{
	return translate(ctx, ctx->protocol == IPPROTO_UDP);
}

SEC("cgroup/sendmsg4")
int sock_sendmsg4(struct bpf_sock_addr *ctx)
{
	return translate(ctx, 1);
}

SEC("cgroup/recvmsg4")
int sock_recvmsg4(struct bpf_sock_addr *ctx)
{
	struct sock_rev_key rk = { .cookie = bpf_get_socket_cookie(ctx), .ip = ctx->user_ip4,
				   .port = (__u16)ctx->user_port };
	struct backend *vip = bpf_map_lookup_elem(&lb_sock_reverse, &rk);

	if (vip) {
		ctx->user_ip4 = vip->ip;
		ctx->user_port = vip->port;
		count(C_SOCK_REVERSED);
	}
	return 1;
}
