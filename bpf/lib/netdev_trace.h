/* SPDX-License-Identifier: GPL-2.0 */
/* from-network / to-network traces of the node device (host.c), for Hubble.
 *
 * from_netdev writes TRACE_FROM_NETWORK for an IPv4 TCP/UDP/ICMP-echo packet arriving at the node,
 * to_netdev TRACE_TO_NETWORK for one it lets leave (but not a pod's packet that from_container
 * already traced to-network, see netdev_traced_by_pod), as monitor aggregation (monitor_aggregation.h)
 * lets them: from-network only at level none (from lowest on, nothing is traced where a packet is
 * received, as in Cilium); to-network for every packet below medium, and from medium on only for a
 * packet the host firewall's conntrack reported (the node's own connections while the host firewall
 * is on), as Cilium's cil_to_netdev: its trace carries the monitor value only that lookup sets. The
 * connection's direction (trace reason) comes from the endpoints' conntrack entries (mb_ct) without
 * accounting on them; a first packet not seen there yet (the destination's hooks run after
 * from_netdev) is NEW for a TCP SYN, unknown otherwise.
 *
 * netdev_trace is a global BPF function: the verifier checks it once, on its own, instead of on
 * every path of the two programs; its locals live in a per-CPU scratch map (mb_netdev_scratch).
 */
#ifndef MEMBRANE_NETDEV_TRACE_H
#define MEMBRANE_NETDEV_TRACE_H

#include "common.h"
#include "maps.h"
#include "events.h"
#include "ipcache.h"
#include "conntrack.h"
#include "lb.h"
#include "nat.h"
#include "endpoints.h"
#include "fib.h"

/* netdev_trace's working memory: its caller (from_netdev, to_netdev) leaves too little of the
 * 512-byte stack the verifier allows a program and the functions it calls together. */
struct netdev_scratch {
	struct event_ctx ctx;
	struct lb4_tuple t;
	struct ct_key ct;
	__u32 point;
	struct ipcache_key ipk; /* netdev_identity's key: not on the stack (see netdev_trace) */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct netdev_scratch);
} mb_netdev_scratch SEC(".maps");

/* ipcache_identity with its key in the scratch map: netdev_trace's frame must stay within 32 bytes,
 * as from_netdev's takes the rest of the 512 the verifier allows both. */
static __always_inline __u32 netdev_identity(struct netdev_scratch *s, __u32 ip4)
{
	struct ipcache_value *value;

	s->ipk.prefixlen = 32;
	s->ipk.ip4 = ip4;
	value = bpf_map_lookup_elem(&mb_ipcache, &s->ipk);
	return value ? value->sec_identity : IDENTITY_WORLD;
}

/* Is there a conntrack entry (endpoint hooks) for saddr -> daddr as the connection's first packet? */
static __always_inline int netdev_ct_has(struct ct_key *key, __u32 saddr, __u32 daddr, __u16 sport, __u16 dport,
					 __u8 proto)
{
	lb4_ct_key(key, saddr, daddr, sport, dport, proto, CT_EGRESS);
	if (bpf_map_lookup_elem(&mb_ct, key))
		return 1;
	key->direction = CT_INGRESS;
	return bpf_map_lookup_elem(&mb_ct, key) != NULL;
}

static __always_inline __u8 netdev_trace_reason(struct netdev_scratch *s)
{
	const struct lb4_tuple *t = &s->t;

	if (netdev_ct_has(&s->ct, t->saddr, t->daddr, t->sport, t->dport, t->proto))
		return ct_is_syn(t->proto, t->tcp_flags) ? TRACE_REASON_NEW : TRACE_REASON_ESTABLISHED;
	if (netdev_ct_has(&s->ct, t->daddr, t->saddr, t->dport, t->sport, t->proto))
		return TRACE_REASON_REPLY;
	return ct_is_syn(t->proto, t->tcp_flags) ? TRACE_REASON_NEW : TRACE_REASON_UNKNOWN;
}

/* Write a `point` trace (TRACE_FROM_NETWORK / TRACE_TO_NETWORK) for the packet if monitor
 * aggregation wants it; `report`: MONITOR_REPORT_HOST_FW when the host firewall's conntrack reported
 * the packet, else 0. Always returns 0. */
__attribute__((noinline)) int netdev_trace(struct __sk_buff *skb, __u32 point, __u32 report)
{
	struct netdev_scratch *s;
	struct event_ctx *ctx;

	/* Asked first: at the default level a pod's packet costs only this lookup. */
	if (!trace_wanted(point, report))
		return 0;
	s = bpf_map_lookup_elem(&mb_netdev_scratch, &array_key0);
	if (!s)
		return 0;
	s->point = point; /* kept here, not in a register across the calls below: a smaller frame */
	__builtin_memset(&s->t, 0, sizeof(s->t));
	if (!nat4_tuple(skb, &s->t))
		return 0;
	point = s->point;
	ctx = &s->ctx;
	event_ctx_init(ctx, 0);
	ctx->trace_reason = netdev_trace_reason(s);
	/* The connection's direction as Hubble gives it (the same for its replies): one started on
	 * this side (its packets leaving, its replies arriving) is egress, one started on the other
	 * side ingress; unknown (0) while the connection is not known. */
	if (ctx->trace_reason != TRACE_REASON_UNKNOWN)
		ctx->direction = (point == TRACE_TO_NETWORK) == (ctx->trace_reason != TRACE_REASON_REPLY) ?
				 METRIC_EGRESS : METRIC_INGRESS;
	ctx->src_identity = netdev_identity(s, s->t.saddr);
	ctx->dst_identity = netdev_identity(s, s->t.daddr);
	ctx->protocol = s->t.proto;
	ctx->dport = bpf_ntohs(s->t.dport);
	ctx->report = 1;
	write_event(skb, ctx, EVENT_TRACE, (__u8)point, 0, POLICY_MATCH_NONE, 0); /* trace_wanted_by: asked above */
	return 0;
}

/* With eBPF host routing, from_container redirects a pod's packet straight to the node device and
 * writes its to-network trace itself below medium (lxc.c; from medium on nobody does, as in
 * Cilium): to_netdev must not write a second one. Asked before to_netdev translates the packet (masquerade). A global function
 * too: inlined, its two answers would double the states the verifier walks through to_netdev. */
__attribute__((noinline)) int netdev_traced_by_pod(struct __sk_buff *skb)
{
	struct iphdr *ip4;

	if (!host_routing_enabled())
		return 0;
	ip4 = ipv4_header(skb);
	return ip4 && lookup_ip4_endpoint(ip4->saddr);
}

#endif /* MEMBRANE_NETDEV_TRACE_H */
