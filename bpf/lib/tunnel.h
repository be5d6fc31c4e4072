/* SPDX-License-Identifier: GPL-2.0 */
/* Tunnel routing (routingMode=tunnel): a pod's packet for another node's pod CIDR leaves through
 * this node's collect-metadata VXLAN device, the owning node's IP as the outer destination and
 * the sender's security identity as the VNI (as Cilium does); overlay.c takes it in there. */
#ifndef MEMBRANE_TUNNEL_H
#define MEMBRANE_TUNNEL_H

#include <linux/ip.h>

#include "common.h"
#include "ipv4.h"
#include "maps.h"

#define TUNNEL_TTL 64

/* Encapsulate toward the node owning ip4->daddr's pod CIDR (TTL > 1, checked by the caller).
 * Returns the redirect verdict, CTX_ACT_DROP if the kernel refused the tunnel key, or
 * CTX_ACT_OK when tunnel routing is off or no remote node owns the address. */
static __always_inline int tunnel_redirect_v4(struct __sk_buff *skb, struct iphdr *ip4, __u32 src_identity)
{
	struct tunnel_key key = { .prefixlen = 32, .ip4 = ip4->daddr };
	struct bpf_tunnel_key tkey = {};
	struct tunnel_config *cfg;
	struct tunnel_value *node;
	__u32 zero = 0, ifindex;

	cfg = bpf_map_lookup_elem(&mb_tunnel_config, &zero);
	if (!cfg || !cfg->ifindex)
		return CTX_ACT_OK;
	ifindex = cfg->ifindex;
	node = bpf_map_lookup_elem(&mb_tunnel, &key);
	if (!node)
		return CTX_ACT_OK;
	tkey.remote_ipv4 = bpf_ntohl(node->node_ip);
	tkey.tunnel_id = src_identity;
	tkey.tunnel_ttl = TUNNEL_TTL;
	ipv4_dec_ttl(ip4);
	if (bpf_skb_set_tunnel_key(skb, &tkey, sizeof(tkey), BPF_F_ZERO_CSUM_TX) < 0)
		return CTX_ACT_DROP;
	return bpf_redirect(ifindex, 0);
}

#endif /* MEMBRANE_TUNNEL_H */
