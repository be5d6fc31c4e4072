/* SPDX-License-Identifier: GPL-2.0 */
/* Host firewall (hostFirewall.enabled): the node's own traffic under the policy of its host
 * endpoint (reserved:host), whose rows in mb_policy carry the ep_id of mb_host_ep.
 *
 *   ingress  a packet for one of the node's addresses (ipcache identity host: the node IP and
 *            the router IP): at from_netdev when it arrives on the node device, at
 *            from_container when a local pod sends it (after the pod's own egress);
 *   egress   a packet the node sends out of the node device (source: the node IP), at to_netdev.
 *
 * The host endpoint tracks its connections in mb_ct like any endpoint (CT_INGRESS for what it
 * accepts, CT_EGRESS for what it starts), so replies pass in both directions and policy decides a
 * connection's first packet only. Everything passes untouched while mb_host_ep has no ep_id; with
 * an ep_id every connection is tracked, and a direction is filtered only while its
 * POLICY_*_ENFORCED flag is set (the agent sets it once the allows are in the map). Policy
 * verdicts and drops are reported with the host endpoint's id and the host identity.
 *
 * A pod's reply to a connection the node started towards it passes (the pod's own conntrack says
 * CT_REPLY); the node talking to its own addresses never reaches a device.
 */
#ifndef MEMBRANE_HOST_FIREWALL_H
#define MEMBRANE_HOST_FIREWALL_H

#include "common.h"
#include "drop.h"
#include "maps.h"
#include "ipv4.h"
#include "ipcache.h"
#include "l4.h"
#include "conntrack.h"
#include "policy.h"
#include "events.h"

/* The host endpoint, or NULL when the host firewall is off. */
static __always_inline struct host_endpoint *host_fw_endpoint(void)
{
	__u32 zero = 0;
	struct host_endpoint *hep = bpf_map_lookup_elem(&mb_host_ep, &zero);

	return hep && hep->ep_id ? hep : NULL;
}

/* Conntrack, then the host endpoint's policy for a new connection, of one IPv4 packet the node
 * receives (ctx->direction METRIC_INGRESS) or sends (METRIC_EGRESS) with a peer of `peer`.
 * Fills ctx for the packet's events, ctx->report with conntrack's report (MONITOR_REPORT_HOST_FW
 * or 0). Returns REASON_FORWARDED or the DROP_* reason. */
static __always_inline int host_fw_verdict(struct __sk_buff *skb, const struct iphdr *ip4, struct event_ctx *ctx,
					   const struct host_endpoint *hep, __u32 peer)
{
	int egress = ctx->direction == METRIC_EGRESS;
	__u8 match_type = POLICY_MATCH_NONE;
	__u16 ep_id = hep->ep_id, flags = hep->flags;
	struct l4_info l4;
	struct ct_key key;
	int ret, report = 0;
	__u32 proxy_port = 0; /* the host endpoint has no L7 redirects: a host policy's rules stay L3/L4 */

	ctx->protocol = ip4->protocol;
	ctx->ep_id = ep_id;
	ctx->src_identity = egress ? IDENTITY_HOST : peer;
	ctx->dst_identity = egress ? peer : IDENTITY_HOST;
	ret = l4_extract(skb, ip4, &l4);
	if (ret != REASON_FORWARDED)
		return ret;
	ctx->dport = l4.policy_port;
	ct_key_init(&key, ip4, &l4, egress ? CT_EGRESS : CT_INGRESS);
	if (l4.trackable || l4.related) {
		ret = ct_lookup(&key, l4.tcp_flags, skb->len, &report, l4.related, &proxy_port);
		ctx->report = report ? MONITOR_REPORT_HOST_FW : 0;
		switch (ret) {
		case CT_ESTABLISHED:
		case CT_REPLY:
		case CT_RELATED:
			return REASON_FORWARDED;
		default:
			break;
		}
	}
	ctx->report = MONITOR_REPORT_HOST_FW; /* a new connection's first packet */
	if (flags & (egress ? POLICY_EGRESS_ENFORCED : POLICY_INGRESS_ENFORCED)) {
		ctx->trace_reason = TRACE_REASON_NEW;
		ret = policy_verdict(ep_id, ctx->direction, peer, ip4->protocol, l4.policy_port, skb->len, &match_type,
				     &proxy_port);
		emit_policy_verdict(skb, ctx, match_type, ret);
		if (ret != REASON_FORWARDED)
			return ret;
	}
	if (l4.trackable)
		ct_create(&key, l4.tcp_flags, skb->len, ctx->src_identity, 0);
	return REASON_FORWARDED;
}

/* from_netdev: a packet for one of the node's addresses, from the network. CTX_ACT_OK or a drop. */
static __always_inline int host_fw_from_netdev(struct __sk_buff *skb)
{
	struct host_endpoint *hep = host_fw_endpoint();
	struct event_ctx ctx;
	struct iphdr *ip4;
	int ret;

	if (!hep)
		return CTX_ACT_OK;
	ip4 = ipv4_header(skb);
	if (!ip4 || ipcache_identity(ip4->daddr) != IDENTITY_HOST)
		return CTX_ACT_OK; /* not ours: routed through the node */
	event_ctx_init(&ctx, METRIC_INGRESS);
	ret = host_fw_verdict(skb, ip4, &ctx, hep, ipcache_identity(ip4->saddr));
	if (ret != REASON_FORWARDED)
		return drop_notify(skb, &ctx, (__u8)ret);
	return CTX_ACT_OK;
}

/* to_netdev: a packet the node itself sends (source `node_ip`). CTX_ACT_OK or a drop; *report:
 * conntrack's report of the packet (MONITOR_REPORT_HOST_FW or 0), for its to-network trace. */
static __always_inline int host_fw_to_netdev(struct __sk_buff *skb, __u32 *report)
{
	struct host_endpoint *hep = host_fw_endpoint();
	struct event_ctx ctx;
	struct iphdr *ip4;
	int ret;

	if (!hep)
		return CTX_ACT_OK;
	ip4 = ipv4_header(skb);
	if (!ip4)
		return CTX_ACT_OK;
	event_ctx_init(&ctx, METRIC_EGRESS);
	ret = host_fw_verdict(skb, ip4, &ctx, hep, ipcache_identity(ip4->daddr));
	*report = ctx.report;
	if (ret != REASON_FORWARDED)
		return drop_notify(skb, &ctx, (__u8)ret);
	return CTX_ACT_OK;
}

/* The host endpoint's ingress for a packet a local pod (identity `pod_identity`) sends to one of the
 * node's addresses. A global BPF function: the verifier checks it once, on its own, rather than on
 * every path of from_container, which is otherwise past the verifier's instruction budget with the
 * pod's policy, L7 redirects, encapsulation and this second policy check all inlined. */
__attribute__((noinline)) int host_fw_pod_to_host(struct __sk_buff *skb, __u32 pod_identity)
{
	struct host_endpoint *hep = host_fw_endpoint();
	struct event_ctx ctx;
	struct iphdr *ip4;
	int ret;

	if (!hep)
		return REASON_FORWARDED;
	ip4 = ipv4_header(skb);
	if (!ip4 || ipcache_identity(ip4->daddr) != IDENTITY_HOST)
		return REASON_FORWARDED;
	event_ctx_init(&ctx, METRIC_INGRESS);
	ret = host_fw_verdict(skb, ip4, &ctx, hep, pod_identity);
	if (ret != REASON_FORWARDED)
		drop_notify(skb, &ctx, (__u8)ret);
	return ret;
}

/* from_container, after the pod (identity `pod_identity`) had its own egress allow the packet
 * (`trace_reason`: the pod's conntrack): a packet for one of the node's addresses meets the host
 * endpoint's ingress. A reply or related error (to a connection the node started) passes.
 * REASON_FORWARDED, or the drop reason, already reported with the host endpoint. */
static __always_inline int host_fw_from_pod(struct __sk_buff *skb, __u8 trace_reason, __u32 pod_identity)
{
	if (trace_reason == TRACE_REASON_REPLY || trace_reason == TRACE_REASON_RELATED)
		return REASON_FORWARDED;
	return host_fw_pod_to_host(skb, pod_identity);
}

#endif /* MEMBRANE_HOST_FIREWALL_H */
