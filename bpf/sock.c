// SPDX-License-Identifier: GPL-2.0
/* Socket-level load balancing (sock_lb.h): cgroup/sock_addr programs, attached at the root cgroup.
 *
 *   sock4_connect      cgroup/connect4:     connect() of TCP and UDP sockets
 *   sock4_sendmsg      cgroup/sendmsg4:     sendmsg()/sendto() with an address, unconnected UDP
 *   sock4_recvmsg      cgroup/recvmsg4:     the source address recvmsg() reports, UDP
 *   sock4_getpeername  cgroup/getpeername4: the peer getpeername() reports
 *
 * Each first checks that the socket lives in one of this node's pod namespaces (mb_sock_netns)
 * and otherwise returns at once, untouched. A frontend is looked up as from_container does
 * (lb4_lookup_service: the in-cluster scope of internalTrafficPolicy=Local services), a backend
 * picked by ClientIP affinity (per netns), maglev or at random (lb4_pick_backend), and the
 * address the application gave is replaced by the backend's. A frontend without backends fails
 * the call with ECONNREFUSED, as the per-packet path's ICMP reject does. Each translation records
 * backend -> frontend for the socket in mb_lb_rev_sk, for recvmsg and getpeername.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <errno.h>

#include "common.h"
#include "conntrack.h"
#include "lb.h"
#include "maps.h"
#include "sock_lb.h"

#define SYS_REJECT  0
#define SYS_PROCEED 1

static __always_inline int sock4_in_pod(struct bpf_sock_addr *ctx, __u64 *netns)
{
	struct sock_netns_key key = { .cookie = bpf_get_netns_cookie(ctx) };

	*netns = key.cookie;
	return bpf_map_lookup_elem(&mb_sock_netns, &key) != NULL;
}

/* The backend of a new socket of netns ``netns`` to the service (0 if none). */
static __always_inline __u32 sock4_select_backend(struct bpf_sock_addr *ctx, struct lb_svc_key *key,
						  const struct lb_svc_value *svc, __u64 netns)
{
	struct lb_sock_aff_key akey = { .netns_cookie = netns, .rev_nat_index = svc->rev_nat_index };
	int affinity = svc->flags & LB_F_AFFINITY;
	struct lb_affinity *aff, fresh = {};
	struct lb_backend *be;
	__u32 backend_id = 0, hash = 0, now = 0;

	if (affinity) {
		now = ct_now();
		aff = bpf_map_lookup_elem(&mb_lb_sock_aff, &akey);
		if (aff && aff->last_used + svc->affinity_timeout >= now) {
			be = bpf_map_lookup_elem(&mb_lb_be, &aff->backend_id);
			if (be && !(be->flags & LB_BE_F_TERMINATING))
				backend_id = aff->backend_id;
		}
	}
	if (!backend_id) {
		if (svc->flags & LB_F_MAGLEV) {
			hash = lb_mix(lb_mix(0x9e3779b9, (__u32)netns), (__u32)(netns >> 32));
			if (!affinity)
				hash = lb_mix(hash, (__u32)bpf_get_socket_cookie(ctx));
			hash = lb_mix(lb_mix(hash, key->address), ((__u32)key->dport << 8) | key->proto);
		}
		backend_id = lb4_pick_backend(key, svc, hash);
	}
	if (backend_id && affinity) {
		fresh.backend_id = backend_id;
		fresh.last_used = now;
		bpf_map_update_elem(&mb_lb_sock_aff, &akey, &fresh, BPF_ANY);
	}
	return backend_id;
}

static __always_inline int sock4_xlate_fwd(struct bpf_sock_addr *ctx)
{
	struct lb_rev_sk_key rkey = {};
	struct lb_rev_sk rval = {};
	struct lb_svc_value *svc;
	struct lb_svc_key key;
	struct lb_backend *be = NULL;
	struct lb4_tuple t = {};
	__u32 backend_id;
	__u64 netns;

	if (!sock4_in_pod(ctx, &netns))
		return SYS_PROCEED;
	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP)
		return SYS_PROCEED;
	t.daddr = ctx->user_ip4;
	t.dport = (__u16)ctx->user_port;
	t.proto = (__u8)ctx->protocol;
	svc = lb4_lookup_service(&key, &t);
	if (!svc)
		return SYS_PROCEED;
	backend_id = sock4_select_backend(ctx, &key, svc, netns);
	if (backend_id)
		be = bpf_map_lookup_elem(&mb_lb_be, &backend_id);
	if (!be) {
		bpf_set_retval(-ECONNREFUSED);
		return SYS_REJECT;
	}
	rkey.cookie = bpf_get_socket_cookie(ctx);
	rkey.address = be->address;
	rkey.port = be->port;
	rval.address = t.daddr;
	rval.port = t.dport;
	rval.rev_nat_index = svc->rev_nat_index;
	ctx->user_ip4 = be->address;
	ctx->user_port = be->port;
	bpf_map_update_elem(&mb_lb_rev_sk, &rkey, &rval, BPF_ANY);
	return SYS_PROCEED;
}

/* The frontend back in place of the backend the socket talks to, if it was translated. */
static __always_inline int sock4_xlate_rev(struct bpf_sock_addr *ctx)
{
	struct lb_rev_sk_key rkey = {};
	struct lb_revnat_key fkey = {};
	struct lb_rev_sk *rval;
	__u64 netns;

	if (!sock4_in_pod(ctx, &netns))
		return SYS_PROCEED;
	rkey.cookie = bpf_get_socket_cookie(ctx);
	rkey.address = ctx->user_ip4;
	rkey.port = (__u16)ctx->user_port;
	rval = bpf_map_lookup_elem(&mb_lb_rev_sk, &rkey);
	if (!rval)
		return SYS_PROCEED;
	fkey.rev_nat_index = rval->rev_nat_index;
	if (!bpf_map_lookup_elem(&mb_lb_revnat, &fkey)) /* the service is gone: show the truth */
		return SYS_PROCEED;
	ctx->user_ip4 = rval->address;
	ctx->user_port = rval->port;
	return SYS_PROCEED;
}

SEC("cgroup/connect4")
int sock4_connect(struct bpf_sock_addr *ctx)
{
	return sock4_xlate_fwd(ctx);
}

SEC("cgroup/sendmsg4")
int sock4_sendmsg(struct bpf_sock_addr *ctx)
{
	return sock4_xlate_fwd(ctx);
}

SEC("cgroup/recvmsg4")
int sock4_recvmsg(struct bpf_sock_addr *ctx)
{
	return sock4_xlate_rev(ctx);
}

SEC("cgroup/getpeername4")
int sock4_getpeername(struct bpf_sock_addr *ctx)
{
	return sock4_xlate_rev(ctx);
}

char _license[] SEC("license") = "GPL";
