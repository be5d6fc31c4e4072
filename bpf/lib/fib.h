/* SPDX-License-Identifier: GPL-2.0 */
/* eBPF host routing (Cilium's "Host Routing: BPF"): forward pod traffic between a pod's veth and
 * the node's devices without the node's IP stack.
 *
 * Out: the node's FIB decides the egress device and next hop (bpf_fib_lookup), the packet leaves
 * with the neighbour's MAC (or through bpf_redirect_neigh, which resolves it). In: a packet for a
 * local endpoint goes straight to its lxc device, whose to_container enforces ingress policy.
 * Whatever the FIB cannot forward (a local address, no route, fragmentation needed, policy
 * routing that needs the stack) is left to the kernel, as before. Switched on per node by
 * HOST_F_HOST_ROUTING in mb_host_config (Helm bpf.hostLegacyRouting=false). */
#ifndef MEMBRANE_FIB_H
#define MEMBRANE_FIB_H

#include <linux/ip.h>

#include "common.h"
#include "eth.h"
#include "ipv4.h"
#include "maps.h"

#ifndef AF_INET
#define AF_INET 2
#endif

static __always_inline int host_routing_enabled(void)
{
	__u32 zero = 0;
	struct host_config *cfg = bpf_map_lookup_elem(&mb_host_config, &zero);

	return cfg && cfg->node_ip && (cfg->flags & HOST_F_HOST_ROUTING);
}

/* Forward an IPv4 packet (TTL > 1, checked by the caller) to its next hop off this node.
 * Returns the redirect verdict, or CTX_ACT_OK when the stack must handle the packet. */
static __always_inline int fib_redirect_v4(struct __sk_buff *skb, struct iphdr *ip4)
{
	struct bpf_fib_lookup fib = {};
	struct ethhdr *eth;
	long ret;

	fib.family = AF_INET;
	fib.tos = ip4->tos;
	fib.l4_protocol = ip4->protocol;
	/* > MTU: FRAG_NEEDED, the stack answers. A GSO packet's tot_len is the whole super-packet of a
	 * bulk TCP stream, which leaves as MTU-sized segments: for it tot_len 0 lets the kernel check the
	 * skb itself (is_skb_forwardable knows GSO), else every such packet went up the stack. */
	fib.tot_len = skb->gso_size ? 0 : bpf_ntohs(ip4->tot_len);
	fib.ipv4_src = ip4->saddr;
	fib.ipv4_dst = ip4->daddr;
	fib.ifindex = skb->ifindex;

	ret = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (ret != BPF_FIB_LKUP_RET_SUCCESS && ret != BPF_FIB_LKUP_RET_NO_NEIGH)
		return CTX_ACT_OK;
	ipv4_dec_ttl(ip4);
	if (ret == BPF_FIB_LKUP_RET_NO_NEIGH)
		return bpf_redirect_neigh(fib.ifindex, NULL, 0, 0);
	eth = ctx_data(skb);
	if (!PKT_HAS(eth, sizeof(*eth), ctx_data_end(skb)))
		return CTX_ACT_DROP;
	eth_set_macs(eth, fib.smac, fib.dmac);
	return bpf_redirect(fib.ifindex, 0);
}

/* Forward a packet the host programs translated (NodePort, ExternalIP, LB IP to a backend on another
 * node) to the next hop the FIB names, whatever the device: the underlay, or cilium_wg0 with
 * WireGuard (an L3 device; the kernel drops the Ethernet header on redirect), so such traffic is
 * encrypted like pod traffic. Routes that refuse the packet (blackhole, unreachable, prohibit: the
 * routes WireGuard leaves behind while its device is down) drop it: CTX_ACT_DROP. No MTU check, as
 * with bpf_redirect_neigh before. CTX_ACT_OK: the FIB has no answer; the caller decides. */
static __always_inline int fib_forward_translated_v4(struct __sk_buff *skb, struct iphdr *ip4)
{
	struct bpf_fib_lookup fib = {};
	struct ethhdr *eth;
	long ret;

	fib.family = AF_INET;
	fib.tos = ip4->tos;
	fib.l4_protocol = ip4->protocol;
	fib.ipv4_src = ip4->saddr;
	fib.ipv4_dst = ip4->daddr;
	fib.ifindex = skb->ifindex;

	ret = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (ret == BPF_FIB_LKUP_RET_BLACKHOLE || ret == BPF_FIB_LKUP_RET_UNREACHABLE ||
	    ret == BPF_FIB_LKUP_RET_PROHIBIT)
		return CTX_ACT_DROP;
	if (ret != BPF_FIB_LKUP_RET_SUCCESS && ret != BPF_FIB_LKUP_RET_NO_NEIGH)
		return CTX_ACT_OK;
	ipv4_dec_ttl(ip4);
	if (ret == BPF_FIB_LKUP_RET_NO_NEIGH)
		return bpf_redirect_neigh(fib.ifindex, NULL, 0, 0);
	eth = ctx_data(skb);
	if (!PKT_HAS(eth, sizeof(*eth), ctx_data_end(skb)))
		return CTX_ACT_DROP;
	eth_set_macs(eth, fib.smac, fib.dmac);
	return bpf_redirect(fib.ifindex, 0);
}

#endif /* MEMBRANE_FIB_H */
