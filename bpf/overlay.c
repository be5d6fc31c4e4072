// SPDX-License-Identifier: GPL-2.0
/* Program for the node's collect-metadata VXLAN device (tunnel routing, routingMode=tunnel).
 *
 *   from_overlay  tc ingress: packets decapsulated by the device
 *
 * A packet for a local endpoint gets the endpoint's ingress (conntrack, policy, rev-NAT; the
 * sender's identity is the VNI the sending node's from_container put in the tunnel header,
 * tunnel.h, so no ipcache lookup is needed for it) and goes straight into the pod's namespace.
 * A tunnel header that cannot be read is dropped (147 "Error retrieving tunnel key"); anything
 * else (ARP, a packet for the node itself, a TTL about to expire) is left to the kernel.
 */
#include "common.h"
#include "drop.h"
#include "maps.h"
#include "endpoints.h"
#include "metrics.h"
#include "eth.h"
#include "ipv4.h"
#include "events.h"
#include "to_endpoint.h"
#include "proxy.h"
#include "egress_gw.h"

#define DROP_NO_TUNNEL_KEY 147 /* "Error retrieving tunnel key" */

SEC("tc")
int from_overlay(struct __sk_buff *skb)
{
	struct bpf_tunnel_key key = {};
	struct endpoint_info *ep;
	struct event_ctx ctx;
	struct ethhdr *eth;
	struct iphdr *ip4;
	__u32 ifindex;
	int verdict;

	event_ctx_init(&ctx, METRIC_INGRESS);
	eth = ctx_data(skb);
	if (!PKT_HAS(eth, sizeof(*eth), ctx_data_end(skb)) || eth->h_proto != bpf_htons(ETH_P_IP))
		return CTX_ACT_OK;
	if (bpf_skb_get_tunnel_key(skb, &key, sizeof(key), 0) < 0)
		return drop_notify(skb, &ctx, DROP_NO_TUNNEL_KEY);
	ip4 = ipv4_header(skb);
	if (!ip4)
		return drop_notify(skb, &ctx, DROP_INVALID);
	ep = lookup_ip4_endpoint(ip4->daddr);
	if (!ep) { /* egress gateway traffic this node sends on (egress_gw.h), or the kernel's */
		verdict = egress_gw_at_gateway(skb, ip4);
		if (verdict != EGW_PASS && verdict != EGW_REDIRECTED) {
			ctx.tunnel_identity = key.tunnel_id;
			return drop_notify(skb, &ctx, (__u8)verdict);
		}
		return CTX_ACT_OK;
	}
	if (ip4->ttl <= 1)
		return CTX_ACT_OK;
	ifindex = ep->ifindex;
	eth = ctx_data(skb);
	if (!PKT_HAS(eth, sizeof(*eth), ctx_data_end(skb)))
		return drop_notify(skb, &ctx, DROP_INVALID);
	eth_set_macs(eth, ep->lxc_mac, ep->pod_mac);
	ipv4_dec_ttl(ip4);
	ctx.tunnel_identity = key.tunnel_id;
	emit_trace(skb, &ctx, TRACE_FROM_OVERLAY);
	verdict = to_endpoint_ipv4(skb, &ctx);
	if (verdict != REASON_FORWARDED)
		return drop_notify(skb, &ctx, (__u8)verdict);
	if (ctx.proxy_port) /* the endpoint's L7 rules: to the proxy first (proxy.h) */
		return proxy_divert_ingress(skb, &ctx);
	return bpf_redirect_peer(ifindex, 0);
}

char _license[] SEC("license") = "GPL";
