/* SPDX-License-Identifier: GPL-2.0 */
/* IP-in-IP (Calico's encapsulation.type=ipip) built in BPF: this kernel has no ipip module.
 *
 * Send (tunnel.h, for a tunnel map entry with TUNNEL_F_IPIP): grow the packet by an IPv4 header
 * after the Ethernet header (bpf_skb_adjust_room, BPF_ADJ_ROOM_MAC with the L3 encap flag so GSO
 * packets are segmented as IPXIP4), write the outer header (protocol 4, this node's address to the
 * owning node's), and hand it to the node device the FIB names for the outer destination.
 * Receive (host.c from_netdev): an IPIP packet addressed to this node's address loses its outer
 * header and then takes the normal path of a packet from the network (host routing with the
 * endpoint's ingress policy, or the kernel). MTU: pods get 20 bytes less (membrane.model.encap). */
#ifndef MEMBRANE_IPIP_H
#define MEMBRANE_IPIP_H

#include <linux/ip.h>

#include "common.h"
#include "eth.h"
#include "ipv4.h"
#include "maps.h"
#include "ipcache.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef IPPROTO_IPIP
#define IPPROTO_IPIP 4
#endif
/* Since Linux 6.3; the build host's uapi header may predate it. */
#define IPIP_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#define IPIP_TTL 64
#define IPIP_IDENTITY_REMOTE_NODE 6

/* Header checksum of a 20-byte IPv4 header whose check field is 0. */
static __always_inline __sum16 ipip_header_csum(const struct iphdr *ip4)
{
	const __u16 *w = (const __u16 *)ip4;
	__u32 sum = 0;
	int i;

#pragma unroll
	for (i = 0; i < (int)(sizeof(*ip4) / 2); i++)
		sum += w[i];
	return (__sum16)~csum_fold32(sum);
}

/* Encapsulate toward `remote` (node IPv4, network order) from `local`; the inner TTL has been
 * decremented by the caller. Returns the redirect verdict or CTX_ACT_DROP. */
static __always_inline int ipip_encap_redirect(struct __sk_buff *skb, __u32 local, __u32 remote)
{
	struct bpf_fib_lookup fib = {};
	struct iphdr outer = {};
	struct ethhdr *eth;
	struct iphdr *ip4;
	__u16 inner_len;
	long ret;

	ip4 = ipv4_header(skb);
	if (!ip4 || !local)
		return CTX_ACT_DROP;
	inner_len = bpf_ntohs(ip4->tot_len);
	outer.version = 4;
	outer.ihl = 5;
	outer.tos = ip4->tos;
	outer.tot_len = bpf_htons(inner_len + sizeof(outer));
	outer.ttl = IPIP_TTL;
	outer.protocol = IPPROTO_IPIP;
	outer.saddr = local;
	outer.daddr = remote;
	outer.check = ipip_header_csum(&outer);

	/* The route first, while the packet is still the pod's. The MTU check: a GSO packet's tot_len
	 * is the whole super-packet, so it is left to the kernel (tot_len 0: is_skb_forwardable, which
	 * passes GSO); every bulk TCP packet came back FRAG_NEEDED before. A plain packet's outer size
	 * is checked here (pods have MTU 1480, so it fits unless the underlay is smaller). */
	fib.family = AF_INET;
	fib.l4_protocol = IPPROTO_IPIP;
	fib.tot_len = skb->gso_size ? 0 : inner_len + sizeof(outer);
	fib.ipv4_src = local;
	fib.ipv4_dst = remote;
	fib.ifindex = skb->ifindex;
	ret = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (ret != BPF_FIB_LKUP_RET_SUCCESS && ret != BPF_FIB_LKUP_RET_NO_NEIGH)
		return CTX_ACT_DROP; /* the kernel would take an outer source of its own as martian */

	if (bpf_skb_adjust_room(skb, sizeof(outer), BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4))
		return CTX_ACT_DROP;
	if (bpf_skb_store_bytes(skb, sizeof(struct ethhdr), &outer, sizeof(outer), 0))
		return CTX_ACT_DROP;
	if (ret == BPF_FIB_LKUP_RET_NO_NEIGH)
		return bpf_redirect_neigh(fib.ifindex, NULL, 0, 0);
	eth = ctx_data(skb);
	if (!PKT_HAS(eth, sizeof(*eth), ctx_data_end(skb)))
		return CTX_ACT_DROP;
	eth_set_macs(eth, fib.smac, fib.dmac);
	return bpf_redirect(fib.ifindex, 0);
}

/* from_netdev: strip the outer header of an IPIP packet for `node_ip`. Returns 1 when the packet
 * was decapsulated (headers must be read again), 0 when it is no IPIP packet for us, -1 on error. */
static __always_inline int ipip_decap(struct __sk_buff *skb, __u32 node_ip)
{
	struct ethhdr *eth = ctx_data(skb);
	struct iphdr *ip4;

	if (!PKT_HAS(eth, sizeof(*eth), ctx_data_end(skb)) || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	ip4 = ipv4_header(skb);
	if (!ip4 || ip4->protocol != IPPROTO_IPIP || ip4->daddr != node_ip || ip4->ihl != 5)
		return 0;
	if (bpf_skb_adjust_room(skb, -(__s32)sizeof(struct iphdr), BPF_ADJ_ROOM_MAC, IPIP_ADJ_ROOM_DECAP_L3_IPV4))
		return -1;
	return 1;
}

/* ipip_decap for an IPIP packet whose outer source is a cluster node (ipcache: remote-node, 6),
 * as Cilium accepts tunnel traffic only from nodes it knows; others are left to the kernel. A
 * subprogram: inlined, clang kept skb->data pointers across the resize that the verifier refuses. */
static __attribute__((noinline, unused)) int ipip_from_node(struct __sk_buff *skb, __u32 node_ip)
{
	struct ethhdr *eth = ctx_data(skb);
	struct iphdr *ip4;

	if (!PKT_HAS(eth, sizeof(*eth), ctx_data_end(skb)) || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	ip4 = ipv4_header(skb);
	if (!ip4 || ip4->protocol != IPPROTO_IPIP || ip4->daddr != node_ip)
		return 0;
	if (ipcache_identity(ip4->saddr) != IPIP_IDENTITY_REMOTE_NODE)
		return 0;
	return ipip_decap(skb, node_ip);
}

#endif /* MEMBRANE_IPIP_H */
