/* SPDX-License-Identifier: GPL-2.0 */
/* ARP from a pod: checked against the endpoint bound to its veth, then answered in BPF.
 *
 * A pod may only speak ARP for itself: the sender MAC (Ethernet and ARP) must be its own and the
 * sender address its own (or 0.0.0.0, a probe), so it cannot claim another pod's, a node's or an
 * outside address. Its requests for any address are answered with the MAC of its host-side veth
 * (Cilium's ARP responder), so every packet the pod sends goes to the node. */
#ifndef MEMBRANE_ARP_H
#define MEMBRANE_ARP_H

#include <linux/if_arp.h>

#include "common.h"
#include "endpoints.h"
#include "eth.h"

/* Ethernet/IPv4 ARP payload after struct arphdr (the kernel header leaves it out). */
struct arp_eth_ipv4 {
	__u8  sha[ETH_ALEN];
	__be32 sip;
	__u8  tha[ETH_ALEN];
	__be32 tip;
} __attribute__((packed));

enum arp_result {
	ARP_PASS,        /* valid and not ours to answer: let the kernel see it */
	ARP_REPLIED,     /* the frame now holds the reply; redirect it back out */
	ARP_INVALID,     /* truncated frame */
	ARP_SPOOFED_IP,  /* sender address is not the endpoint's (DROP_INVALID_SIP) */
	ARP_SPOOFED_MAC, /* sender MAC is not the endpoint's (DROP_INVALID_SMAC) */
};

/* Check an ARP frame the pod of endpoint `ep` (address `own_ip`) sent; turn a valid request
 * into its reply, in place. */
static __always_inline enum arp_result arp_from_endpoint(struct __sk_buff *skb, const struct endpoint_info *ep,
							 __be32 own_ip)
{
	void *data = ctx_data(skb), *data_end = ctx_data_end(skb);
	struct ethhdr *eth = data;
	struct arphdr *arp = data + sizeof(*eth);
	struct arp_eth_ipv4 *body = (void *)(arp + 1);
	__u8 requester[ETH_ALEN];
	__be32 sip, tip;

	if (!PKT_HAS(arp, sizeof(*arp), data_end))
		return ARP_INVALID;
	if (arp->ar_hrd != bpf_htons(ARPHRD_ETHER) || arp->ar_pro != bpf_htons(ETH_P_IP) ||
	    arp->ar_hln != ETH_ALEN || arp->ar_pln != 4)
		return ARP_PASS; /* not Ethernet/IPv4 ARP: the kernel ignores it */
	if (!PKT_HAS(body, sizeof(*body), data_end))
		return ARP_INVALID;
	if (!eth_addr_equal(body->sha, ep->pod_mac))
		return ARP_SPOOFED_MAC;
	sip = body->sip;
	tip = body->tip;
	/* Requests and replies alike: a pod speaks only for its own address. A probe (sender
	 * 0.0.0.0) claims nothing. */
	if (sip != 0 && sip != own_ip)
		return ARP_SPOOFED_IP;
	if (arp->ar_op != bpf_htons(ARPOP_REQUEST))
		return ARP_PASS; /* the pod answering the node */
	/* Probes and gratuitous ARP (sender == target) are address checks the pod makes about
	 * itself; answering them would make it think its own address is taken. */
	if (sip == 0 || sip == tip)
		return ARP_PASS;

	__builtin_memcpy(requester, body->sha, ETH_ALEN);
	arp->ar_op = bpf_htons(ARPOP_REPLY);
	__builtin_memcpy(body->sha, ep->lxc_mac, ETH_ALEN);
	body->sip = tip;
	__builtin_memcpy(body->tha, requester, ETH_ALEN);
	body->tip = sip;
	eth_set_macs(eth, ep->lxc_mac, requester);
	return ARP_REPLIED;
}

#endif /* MEMBRANE_ARP_H */
