/* SPDX-License-Identifier: GPL-2.0 */
/* Conntrack and L3/L4 policy of a local endpoint for one IPv4 packet, in either direction: its
 * egress at from_container, its ingress wherever the packet is handed to it (to_container, or
 * to_endpoint.h before a redirect straight into the pod). */
#ifndef MEMBRANE_ENDPOINT_POLICY_H
#define MEMBRANE_ENDPOINT_POLICY_H

#include "common.h"
#include "drop.h"
#include "maps.h"
#include "endpoints.h"
#include "ipv4.h"
#include "ipcache.h"
#include "l4.h"
#include "conntrack.h"
#include "policy.h"
#include "events.h"
#include "lb.h"
#include "proxy.h"

/* Identities of an IPv4 packet's ends and the endpoint on our side of the hook (its source at
 * from_container, its destination at to_container), into ctx; returns that endpoint or NULL. */
static __always_inline struct endpoint_info *ipv4_identities(struct event_ctx *ctx, const struct iphdr *ip4)
{
	int egress = ctx->direction == METRIC_EGRESS;
	struct endpoint_info *ep;
	__u32 own, peer;

	ep = lookup_ip4_endpoint(egress ? ip4->saddr : ip4->daddr);
	own = ep ? ep->sec_identity : IDENTITY_UNKNOWN;
	peer = ipcache_identity(egress ? ip4->daddr : ip4->saddr);
	/* From the overlay the sender's identity rode in the tunnel header (overlay.c). */
	if (!egress && ctx->tunnel_identity)
		peer = ctx->tunnel_identity;
	/* Hairpin traffic (lb.h) comes from the pod itself. */
	if (!egress && ep && ip4->saddr == IPV4_LOOPBACK)
		peer = own;
	ctx->ep_id = ep ? ep->ep_id : 0;
	ctx->src_identity = egress ? own : peer;
	ctx->dst_identity = egress ? peer : own;
	return ep;
}

/* Conntrack, then policy for a new connection, of the endpoint on our side of an IPv4 packet:
 * its source at from_container (METRIC_EGRESS), its destination at to_container
 * (METRIC_INGRESS). Fills ctx for the packet's events and, at from_container, traces
 * FROM_LXC. A new connection's entry records rev_nat_index (service translation, lb.h).
 * L7 (proxy.h): sets ctx->proxy_port when the packet must go to a proxy: the packets from the
 * client of a redirected connection (at egress for the pod's own L7 rules, at ingress for the
 * destination's), and the replies on a proxy's upstream connection (CT_F_PROXY_UPSTREAM), at either
 * hook. The ingress proxy's upstream packets (MARK_MAGIC_FROM_PROXY) skip the policy the proxy
 * enforced; the egress proxy's (MARK_MAGIC_FROM_PROXY_EGRESS) meet the destination's ingress policy
 * as any packet does, and its L7 rules too: such a connection is chained through the destination's
 * ingress proxy.
 * Returns REASON_FORWARDED or the DROP_* reason. */
static __always_inline int ipv4_policy_verdict(struct __sk_buff *skb, const struct iphdr *ip4, struct event_ctx *ctx,
					       __u16 rev_nat_index)
{
	__u8 direction = ctx->direction, match_type = POLICY_MATCH_NONE;
	int egress = direction == METRIC_EGRESS;
	int from_proxy = !egress && mark_is(skb, MARK_MAGIC_FROM_PROXY);
	int from_egress_proxy = !egress && mark_is(skb, MARK_MAGIC_FROM_PROXY_EGRESS);
	struct endpoint_info *ep;
	__u32 proxy_port = 0;
	struct l4_info l4;
	struct ct_key key;
	int ret, report = 0;

	ctx->protocol = ip4->protocol;
	ret = l4_extract(skb, ip4, &l4);
	if (ret != REASON_FORWARDED) {
		ipv4_identities(ctx, ip4);
		return ret;
	}
	ctx->dport = l4.policy_port;
	ct_key_init(&key, ip4, &l4, egress ? CT_EGRESS : CT_INGRESS);
	if (l4.trackable || l4.related) {
		switch (ct_lookup(&key, l4.tcp_flags, skb->len, &report, l4.related, &proxy_port)) {
		case CT_ESTABLISHED:
			ctx->trace_reason = TRACE_REASON_ESTABLISHED;
			goto tracked;
		case CT_REPLY:
			ctx->trace_reason = TRACE_REASON_REPLY;
			goto tracked;
		case CT_RELATED: /* an ICMP error about a tracked connection: passes like its replies */
			ctx->trace_reason = TRACE_REASON_RELATED;
			goto tracked;
		default:
			ctx->trace_reason = TRACE_REASON_NEW;
			break;
		}
	}
	ctx->report = 1;
	ep = ipv4_identities(ctx, ip4);
	if (egress)
		emit_trace(skb, ctx, TRACE_FROM_LXC);
	if (from_proxy) {
		proxy_port = 0; /* the ingress proxy enforced this endpoint's policy */
	} else if (ep && (ep->flags & (egress ? POLICY_EGRESS_ENFORCED : POLICY_INGRESS_ENFORCED))) {
		ret = policy_verdict(ep->ep_id, direction, egress ? ctx->dst_identity : ctx->src_identity, ip4->protocol,
				     l4.policy_port, skb->len, &match_type, &proxy_port);
		emit_policy_verdict(skb, ctx, match_type, ret);
		if (ret != REASON_FORWARDED)
			return ret;
	}
	/* A proxy's upstream connection: replies go back to the proxy's socket. An egress proxy's
	 * connection to a destination whose own ingress L7 rules apply goes through that endpoint's
	 * ingress proxy as well (proxy.h, proxy_chain_egress). */
	if (from_egress_proxy && proxy_port && l4.trackable)
		proxy_chain_egress(&key, l4.tcp_flags, skb->len, ctx->src_identity, mark_proxy_port(skb));
	else if (from_proxy || from_egress_proxy)
		proxy_port = mark_proxy_port(skb) | CT_PROXY_UPSTREAM;
	if (l4.trackable) {
		ct_create(&key, l4.tcp_flags, skb->len, ctx->src_identity, proxy_port);
		if (rev_nat_index)
			lb4_ct_set_rev_nat(&key, rev_nat_index);
	}
	if (l4.trackable && !(proxy_port & CT_PROXY_UPSTREAM))
		ctx->proxy_port = (__u16)proxy_port;
	return REASON_FORWARDED;

tracked:
	/* Client packets of a redirected connection (an egress proxy's too, chained to this endpoint's
	 * ingress proxy); replies on a proxy's upstream connection. */
	if ((ctx->trace_reason == TRACE_REASON_ESTABLISHED && !(proxy_port & CT_PROXY_UPSTREAM) && !from_proxy) ||
	    (ctx->trace_reason == TRACE_REASON_REPLY && (proxy_port & CT_PROXY_UPSTREAM)))
		ctx->proxy_port = (__u16)proxy_port;
	ctx->report = report;
	if (report) {
		ipv4_identities(ctx, ip4);
		if (egress)
			emit_trace(skb, ctx, TRACE_FROM_LXC);
	}
	return REASON_FORWARDED;
}

#endif /* MEMBRANE_ENDPOINT_POLICY_H */
