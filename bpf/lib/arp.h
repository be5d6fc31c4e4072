/* SPDX-License-Identifier: GPL-2.0 */
/* ARP responder: a pod's ARP request for any address is answered with the MAC of its host-side
 * veth, so every packet the pod sends goes to the node (Cilium's ARP responder). */
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
	ARP_PASS,    /* not ours to answer: let the kernel see it */
	ARP_REPLIED, /* the frame now holds the reply; redirect it back out */
	ARP_INVALID, /* truncated frame */
};

/* Turn an ARP request from a known endpoint into the reply, in place. */
static __always_inline enum arp_result arp_respond(struct __sk_buff *skb)
{
	void *data = ctx_data(skb), *data_end = ctx_data_end(skb);
	struct ethhdr *eth = data;
	struct arphdr *arp = data + sizeof(*eth);
	struct arp_eth_ipv4 *body = (void *)(arp + 1);
	struct endpoint_info *ep;
	__u8 requester[ETH_ALEN];
	__be32 sip, tip;

	if (!PKT_HAS(arp, sizeof(*arp), data_end))
		return ARP_INVALID;
	if (arp->ar_op != bpf_htons(ARPOP_REQUEST) || arp->ar_hrd != bpf_htons(ARPHRD_ETHER) ||
	    arp->ar_pro != bpf_htons(ETH_P_IP) || arp->ar_hln != ETH_ALEN || arp->ar_pln != 4)
		return ARP_PASS; /* replies (the pod answering the node) and other ARP go to the stack */
	if (!PKT_HAS(body, sizeof(*body), data_end))
		return ARP_INVALID;

	sip = body->sip;
	tip = body->tip;
	/* Probes (sender 0.0.0.0) and gratuitous ARP (sender == target) are address checks the
	 * pod makes about itself; answering them would make it think its own address is taken. */
	if (sip == 0 || sip == tip)
		return ARP_PASS;
	ep = lookup_ip4_endpoint(sip);
	if (!ep)
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
