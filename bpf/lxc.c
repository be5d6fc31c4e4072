// SPDX-License-Identifier: GPL-2.0
/* Programs for the host side of a pod veth (lxc...).
 *
 *   from_container  tc ingress: packets the pod sends
 *   to_container    tc egress:  packets on their way into the pod
 *
 * Local pod-to-pod traffic never enters the node's IP stack: from_container rewrites L2 and
 * redirects the packet to the destination's lxc device, where to_container sees it; with host
 * routing (fib.h) it runs the destination's ingress itself and redirects straight into the
 * destination pod's namespace (to_endpoint.h), skipping the lxc device's queue. In tunnel
 * routing another node's pod CIDR goes into the VXLAN device instead (tunnel.h, overlay.c).
 *
 * Policy: the source endpoint's egress policy at from_container, the destination endpoint's
 * ingress policy at to_container, both on a connection's first packet only (conntrack.h).
 *
 * Services (lb.h): from_container translates a packet to a service frontend into one to a
 * backend before conntrack and policy, so both see the backend; to_container undoes the
 * translation on replies.
 *
 * Source validation: from_container takes the sending endpoint from the veth the packet came
 * in on (mb_lxc), never from the packet. An IPv4 packet whose source address, or a frame whose
 * source MAC, is not that endpoint's is dropped (DROP_INVALID_SIP, DROP_INVALID_SMAC) and
 * reported as sent by the real endpoint, so no pod can borrow another's identity. ARP is
 * checked the same way (arp.h).
 *
 * Events (events.h): from_container traces FROM_LXC, then TO_STACK for what it leaves to the
 * kernel; a local delivery is traced once, as TO_LXC by the destination's to_container, which
 * traces everything it hands to its pod. Traces are aggregated (conntrack.h); every drop and
 * every policy decision on a new connection is reported.
 */
#include "common.h"
#include "drop.h"
#include "maps.h"
#include "endpoints.h"
#include "metrics.h"
#include "eth.h"
#include "ipv4.h"
#include "arp.h"
#include "ipcache.h"
#include "l4.h"
#include "conntrack.h"
#include "policy.h"
#include "events.h"
#include "lb.h"
#include "fib.h"
#include "tunnel.h"
#include "egress_gw.h"
#include "endpoint_policy.h"
#include "to_endpoint.h"
#include "host_firewall.h"
#include "proxy.h"
#include "netdev_pass.h"

/* Drop a frame the pod of `ep` (NULL: the device is no known endpoint) sent with an address or
 * MAC not its own, reported as sent by that endpoint whatever the packet claims. */
static __always_inline int drop_spoofed(struct __sk_buff *skb, struct event_ctx *ctx, const struct endpoint_info *ep,
					__u8 reason)
{
	if (ep) {
		ctx->ep_id = ep->ep_id;
		ctx->src_identity = ep->sec_identity;
	}
	return drop_notify(skb, ctx, reason);
}

/* IPv4 from the pod of `src` (address own_ip): deliver to a local endpoint directly, leave the
 * rest to the kernel. */
static __always_inline int handle_ipv4_from_container(struct __sk_buff *skb, struct event_ctx *ctx,
						      const struct endpoint_info *src, __u32 own_ip)
{
	struct endpoint_info *dst;
	struct ethhdr *eth;
	struct iphdr *ip4;
	__u16 rev_nat_index;
	__u32 ifindex, egw_snat = 0;
	int verdict;

	ip4 = ipv4_header(skb);
	if (!ip4)
		return drop_notify(skb, ctx, DROP_INVALID);
	if (!src || ip4->saddr != own_ip) {
		ctx->protocol = ip4->protocol;
		ctx->dst_identity = ipcache_identity(ip4->daddr);
		return drop_spoofed(skb, ctx, src, DROP_INVALID_SIP);
	}
	/* Service translation first: conntrack and policy see the backend. */
	verdict = lb4_from_container(skb, &rev_nat_index);
	ip4 = ipv4_header(skb);
	if (!ip4)
		return drop_notify(skb, ctx, DROP_INVALID);
	if (verdict != REASON_FORWARDED) {
		ctx->protocol = ip4->protocol;
		ipv4_identities(ctx, ip4);
		if (verdict != DROP_NO_SERVICE)
			return drop_notify(skb, ctx, (__u8)verdict);
		/* Reported and counted as a drop, then answered: back into the pod. */
		drop_notify(skb, ctx, DROP_NO_SERVICE);
		if (lb4_reject(skb) != REASON_FORWARDED)
			return CTX_ACT_DROP;
		return bpf_redirect(skb->ifindex, 0);
	}
	verdict = ipv4_policy_verdict(skb, ip4, ctx, rev_nat_index);
	if (verdict != REASON_FORWARDED)
		return drop_notify(skb, ctx, (__u8)verdict);
	/* Host firewall: a packet for the node meets the host endpoint's ingress (host_firewall.h). */
	if (host_fw_from_pod(skb, ctx->trace_reason, src->sec_identity) != REASON_FORWARDED)
		return CTX_ACT_DROP;
	if (ctx->proxy_port) /* L7: egress rules, or a reply to a proxy's upstream socket (proxy.h) */
		return proxy_to_stack(skb, ctx);
	/* A service connection of the pod to itself: source 169.254.42.1 (lb.h). */
	if (rev_nat_index && ip4->saddr == ip4->daddr) {
		verdict = lb4_hairpin_snat(skb);
		if (verdict != REASON_FORWARDED)
			return drop_notify(skb, ctx, (__u8)verdict);
		ip4 = ipv4_header(skb);
		if (!ip4)
			return drop_notify(skb, ctx, DROP_INVALID);
	}

	dst = lookup_ip4_endpoint(ip4->daddr);
	/* A hairpin reply (to 169.254.42.1) goes back into the pod that sent it. */
	if (!dst && ip4->daddr == IPV4_LOOPBACK)
		dst = lookup_ip4_endpoint(ip4->saddr);
	/* Not a local endpoint: with host routing, straight out of the node device the FIB names
	 * (fib.h); otherwise, and for what the FIB leaves to it (the host, fragmentation needed), the
	 * kernel routes it. A TTL about to expire also goes to the kernel, which answers with ICMP
	 * time exceeded. */
	if (!dst || ip4->ttl <= 1) {
		update_metrics(skb->len, METRIC_EGRESS, REASON_FORWARDED);
		verdict = CTX_ACT_OK;
		/* Tunnel routing: another node's pod CIDR goes into the VXLAN device (tunnel.h). */
		if (!dst && ip4->ttl > 1) {
			/* Egress gateway: to the gateway node through the VXLAN device (egress_gw.h). */
			verdict = egress_gw_from_pod(skb, src->sec_identity);
			if (verdict == EGW_REDIRECTED) {
				emit_trace(skb, ctx, TRACE_TO_OVERLAY);
				return CTX_ACT_REDIRECT;
			}
			egw_snat = verdict == EGW_PASS_SNAT;
			if (verdict != EGW_PASS && verdict != EGW_PASS_SNAT)
				return drop_notify(skb, ctx, (__u8)verdict);
			ip4 = ipv4_header(skb);
			if (!ip4)
				return drop_notify(skb, ctx, DROP_INVALID);
			verdict = tunnel_redirect_v4(skb, ip4, src->sec_identity);
			if (verdict == CTX_ACT_DROP)
				return drop_notify(skb, ctx, DROP_INVALID);
			if (verdict != CTX_ACT_OK) {
				emit_trace(skb, ctx, TRACE_TO_OVERLAY);
				return verdict;
			}
			ip4 = ipv4_header(skb); /* IPIP (ipip.h) may have resized the packet */
			if (!ip4)
				return drop_notify(skb, ctx, DROP_INVALID);
		}
		if (!dst && ip4->ttl > 1 && host_routing_enabled())
			verdict = fib_redirect_v4(skb, ip4);
		if (verdict == CTX_ACT_DROP)
			return drop_notify(skb, ctx, DROP_INVALID);
		if (verdict == CTX_ACT_REDIRECT) /* to_netdev may skip it (netdev_pass.h) */
			netdev_pass_mark(skb, ctx->trace_reason, egw_snat);
		emit_trace(skb, ctx, verdict == CTX_ACT_OK ? TRACE_TO_STACK : TRACE_TO_NETWORK);
		return verdict;
	}

	ifindex = dst->ifindex;
	eth = ctx_data(skb);
	if (!PKT_HAS(eth, sizeof(*eth), ctx_data_end(skb)))
		return drop_notify(skb, ctx, DROP_INVALID);
	eth_set_macs(eth, dst->lxc_mac, dst->pod_mac);
	ipv4_dec_ttl(ip4);
	update_metrics(skb->len, METRIC_EGRESS, REASON_FORWARDED);
	/* Host routing: the destination's ingress here, then straight into its namespace
	 * (to_endpoint.h). Otherwise egress of its lxc device, where to_container does the same. */
	if (host_routing_enabled())
		return to_endpoint_redirect_peer(skb, ifindex);
	return bpf_redirect(ifindex, 0);
}

SEC("tc")
int from_container(struct __sk_buff *skb)
{
	void *data = ctx_data(skb), *data_end = ctx_data_end(skb);
	struct ethhdr *eth = data;
	struct endpoint_info *src;
	struct event_ctx ctx;
	__u32 own_ip = 0;
	__u16 proto;

	event_ctx_init(&ctx, METRIC_EGRESS);
	/* An ingress L7 redirect coming back in for the proxy (proxy.h); pods cannot set marks. */
	if (mark_is(skb, MARK_MAGIC_TO_PROXY))
		return CTX_ACT_OK;
	if (!PKT_HAS(eth, sizeof(*eth), data_end))
		return drop_notify(skb, &ctx, DROP_INVALID);
	proto = bpf_ntohs(eth->h_proto);
	if (proto != ETH_P_IP && proto != ETH_P_ARP)
		goto pass;

	/* The sender is the endpoint bound to this veth; the packet's own claims are checked. */
	src = lookup_lxc_endpoint(skb->ifindex, &own_ip);
	if (!src)
		return drop_spoofed(skb, &ctx, src, DROP_INVALID_SIP);
	if (!eth_addr_equal(eth->h_source, src->pod_mac))
		return drop_spoofed(skb, &ctx, src, DROP_INVALID_SMAC);
	if (proto == ETH_P_IP)
		return handle_ipv4_from_container(skb, &ctx, src, own_ip);

	switch (arp_from_endpoint(skb, src, own_ip)) {
	case ARP_REPLIED:
		update_metrics(skb->len, METRIC_EGRESS, REASON_FORWARDED);
		/* Back out of the device it came in on: into the pod. */
		return bpf_redirect(skb->ifindex, 0);
	case ARP_INVALID:
		return drop_notify(skb, &ctx, DROP_INVALID);
	case ARP_SPOOFED_IP:
		return drop_spoofed(skb, &ctx, src, DROP_INVALID_SIP);
	case ARP_SPOOFED_MAC:
		return drop_spoofed(skb, &ctx, src, DROP_INVALID_SMAC);
	default:
		break;
	}
pass:
	update_metrics(skb->len, METRIC_EGRESS, REASON_FORWARDED);
	return CTX_ACT_OK;
}

SEC("tc")
int to_container(struct __sk_buff *skb)
{
	void *data = ctx_data(skb), *data_end = ctx_data_end(skb);
	struct ethhdr *eth = data;
	struct event_ctx ctx;
	int verdict;

	event_ctx_init(&ctx, METRIC_INGRESS);
	if (PKT_HAS(eth, sizeof(*eth), data_end) && eth->h_proto == bpf_htons(ETH_P_IP)) {
		verdict = to_endpoint_ipv4(skb, &ctx);
		if (verdict != REASON_FORWARDED)
			return drop_notify(skb, &ctx, (__u8)verdict);
		if (ctx.proxy_port) /* the endpoint's L7 rules: to the proxy first (proxy.h) */
			return proxy_divert_ingress(skb, &ctx);
		return CTX_ACT_OK;
	}
	update_metrics(skb->len, METRIC_INGRESS, REASON_FORWARDED);
	return CTX_ACT_OK;
}

char _license[] SEC("license") = "GPL";
