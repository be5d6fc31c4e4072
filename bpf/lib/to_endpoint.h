/* SPDX-License-Identifier: GPL-2.0 */
/* Handing an IPv4 packet to a local endpoint: what to_container does on the lxc device, callable
 * wherever the packet is, so that with host routing it can go straight into the pod's namespace
 * (bpf_redirect_peer, from a tc ingress hook: the pod's own veth or a node device) without
 * losing the endpoint's ingress policy on the way. */
#ifndef MEMBRANE_TO_ENDPOINT_H
#define MEMBRANE_TO_ENDPOINT_H

#include "common.h"
#include "drop.h"
#include "endpoint_policy.h"
#include "events.h"
#include "ipv4.h"
#include "lb.h"
#include "metrics.h"
#include "proxy.h"

/* Ingress of the endpoint an IPv4 packet is addressed to: a hairpin reply's address first,
 * conntrack and ingress policy, the frontend back on a translated reply, the TO_LXC trace.
 * Returns REASON_FORWARDED or the drop reason (the caller reports it with `ctx`). */
static __always_inline int to_endpoint_ipv4(struct __sk_buff *skb, struct event_ctx *ctx)
{
	struct iphdr *ip4;
	int verdict;

	ip4 = ipv4_header(skb);
	if (!ip4)
		return DROP_INVALID;
	/* A hairpin reply: back to the pod's own address first (lb.h). */
	if (ip4->daddr == IPV4_LOOPBACK) {
		verdict = lb4_hairpin_reply(skb);
		if (verdict != REASON_FORWARDED)
			return verdict;
		ip4 = ipv4_header(skb);
		if (!ip4)
			return DROP_INVALID;
	}
	verdict = ipv4_policy_verdict(skb, ip4, ctx, 0);
	if (verdict != REASON_FORWARDED)
		return verdict;
	/* A reply of a translated connection: the client sees the frontend answer. */
	if (ctx->trace_reason == TRACE_REASON_REPLY) {
		verdict = lb4_rev_nat(skb);
		if (verdict != REASON_FORWARDED)
			return verdict;
	}
	if (ctx->proxy_port) /* the caller diverts it to the proxy (proxy.h) */
		return REASON_FORWARDED;
	emit_trace(skb, ctx, TRACE_TO_LXC);
	update_metrics(skb->len, METRIC_INGRESS, REASON_FORWARDED);
	return REASON_FORWARDED;
}

/* The endpoint's ingress, then into its namespace through the veth peer of `lxc_ifindex`.
 * The L2 header must already name the pod (its MAC as destination). */
static __always_inline int to_endpoint_redirect_peer(struct __sk_buff *skb, __u32 lxc_ifindex)
{
	struct event_ctx ctx;
	int verdict;

	event_ctx_init(&ctx, METRIC_INGRESS);
	verdict = to_endpoint_ipv4(skb, &ctx);
	if (verdict != REASON_FORWARDED)
		return drop_notify(skb, &ctx, (__u8)verdict);
	if (ctx.proxy_port) /* the endpoint's L7 rules: to the proxy first (proxy.h) */
		return proxy_divert_ingress(skb, &ctx);
	return bpf_redirect_peer(lxc_ifindex, 0);
}

#endif /* MEMBRANE_TO_ENDPOINT_H */
