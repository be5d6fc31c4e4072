// SPDX-License-Identifier: GPL-2.0
/* Programs for the host side of a pod veth (lxc...).
 *
 *   from_container  tc ingress: packets the pod sends
 *   to_container    tc egress:  packets on their way into the pod
 *
 * Local pod-to-pod traffic never enters the node's IP stack: from_container rewrites L2 and
 * redirects the packet to the destination's lxc device, where to_container sees it.
 */
#include "common.h"
#include "drop.h"
#include "maps.h"
#include "endpoints.h"
#include "metrics.h"
#include "eth.h"
#include "ipv4.h"
#include "arp.h"

/* IPv4 from the pod: deliver to a local endpoint directly, leave the rest to the kernel. */
static __always_inline int handle_ipv4_from_container(struct __sk_buff *skb)
{
	struct endpoint_info *dst;
	struct ethhdr *eth;
	struct iphdr *ip4;
	__u32 ifindex;

	ip4 = ipv4_header(skb);
	if (!ip4)
		return drop_packet(skb, METRIC_EGRESS, DROP_INVALID);

	dst = lookup_ip4_endpoint(ip4->daddr);
	/* Not a local endpoint: the kernel routes it (host, other nodes). A TTL about to expire
	 * also goes to the kernel, which answers with ICMP time exceeded. */
	if (!dst || ip4->ttl <= 1) {
		update_metrics(skb->len, METRIC_EGRESS, REASON_FORWARDED);
		return CTX_ACT_OK;
	}

	/* Egress policy of the source endpoint goes here (a later issue). */

	ifindex = dst->ifindex;
	eth = ctx_data(skb);
	if (!PKT_HAS(eth, sizeof(*eth), ctx_data_end(skb)))
		return drop_packet(skb, METRIC_EGRESS, DROP_INVALID);
	eth_set_macs(eth, dst->lxc_mac, dst->pod_mac);
	ipv4_dec_ttl(ip4);
	update_metrics(skb->len, METRIC_EGRESS, REASON_FORWARDED);
	/* Egress of the destination's lxc device, so its to_container program runs. */
	return bpf_redirect(ifindex, 0);
}

SEC("tc")
int from_container(struct __sk_buff *skb)
{
	void *data = ctx_data(skb), *data_end = ctx_data_end(skb);
	struct ethhdr *eth = data;

	if (!PKT_HAS(eth, sizeof(*eth), data_end))
		return drop_packet(skb, METRIC_EGRESS, DROP_INVALID);

	switch (bpf_ntohs(eth->h_proto)) {
	case ETH_P_IP:
		return handle_ipv4_from_container(skb);
	case ETH_P_ARP:
		switch (arp_respond(skb)) {
		case ARP_REPLIED:
			update_metrics(skb->len, METRIC_EGRESS, REASON_FORWARDED);
			/* Back out of the device it came in on: into the pod. */
			return bpf_redirect(skb->ifindex, 0);
		case ARP_INVALID:
			return drop_packet(skb, METRIC_EGRESS, DROP_INVALID);
		default:
			break;
		}
		break;
	default:
		break;
	}
	update_metrics(skb->len, METRIC_EGRESS, REASON_FORWARDED);
	return CTX_ACT_OK;
}

/* Ingress policy of the destination endpoint: nothing denies yet (a later issue). Returns 0 to
 * allow, or a DROP_* reason. */
static __always_inline int ingress_policy_verdict(struct __sk_buff *skb __attribute__((unused)))
{
	return REASON_FORWARDED;
}

SEC("tc")
int to_container(struct __sk_buff *skb)
{
	int verdict = ingress_policy_verdict(skb);

	if (verdict != REASON_FORWARDED)
		return drop_packet(skb, METRIC_INGRESS, (__u8)verdict);
	update_metrics(skb->len, METRIC_INGRESS, REASON_FORWARDED);
	return CTX_ACT_OK;
}

char _license[] SEC("license") = "GPL";
