/* SPDX-License-Identifier: GPL-2.0 */
/* Tunnel routing (routingMode=tunnel, or encapsulation.mode=Always|CrossSubnet): a pod's packet
 * for another node's pod CIDR leaves through this node's collect-metadata VXLAN device, the owning
 * node's IP as the outer destination and the sender's security identity as the VNI (as Cilium
 * does; overlay.c takes it in there), or as IP-in-IP built in BPF for entries marked TUNNEL_F_IPIP
 * (ipip.h; the identity does not travel, the receiver asks its ipcache as in native routing). */
#ifndef MEMBRANE_TUNNEL_H
#define MEMBRANE_TUNNEL_H

#include <linux/ip.h>

#include "common.h"
#include "ipv4.h"
#include "maps.h"
#include "ipip.h"

#define TUNNEL_TTL 64
#define TUNNEL_IDENTITY_REMOTE_NODE 6

/* Encapsulate toward the node owning ip4->daddr's pod CIDR (TTL > 1, checked by the caller).
 * Returns the redirect verdict, CTX_ACT_DROP if the kernel refused the tunnel key, or
 * CTX_ACT_OK when tunnel routing is off or no remote node owns the address. */
static __always_inline int tunnel_redirect_v4(struct __sk_buff *skb, struct iphdr *ip4, __u32 src_identity)
{
	struct tunnel_key key = { .prefixlen = 32, .ip4 = ip4->daddr };
	struct bpf_tunnel_key tkey = {};
	struct tunnel_config *cfg;
	struct tunnel_value *node;
	struct host_config *host;
	__u32 zero = 0, ifindex;

	node = bpf_map_lookup_elem(&mb_tunnel, &key);
	if (!node)
		return CTX_ACT_OK;
	if (node->flags & TUNNEL_F_IPIP) {
		host = bpf_map_lookup_elem(&mb_host_config, &zero);
		if (!host || !host->node_ip)
			return CTX_ACT_OK;
		ipv4_dec_ttl(ip4);
		return ipip_encap_redirect(skb, host->node_ip, node->node_ip);
	}
	cfg = bpf_map_lookup_elem(&mb_tunnel_config, &zero);
	if (!cfg || !cfg->ifindex)
		return CTX_ACT_OK;
	ifindex = cfg->ifindex;
	tkey.remote_ipv4 = bpf_ntohl(node->node_ip);
	tkey.tunnel_id = src_identity;
	tkey.tunnel_ttl = TUNNEL_TTL;
	ipv4_dec_ttl(ip4);
	if (bpf_skb_set_tunnel_key(skb, &tkey, sizeof(tkey), BPF_F_ZERO_CSUM_TX) < 0)
		return CTX_ACT_DROP;
	return bpf_redirect(ifindex, 0);
}

/* host.c to_netdev: a packet of the node itself (node-to-remote-pod) for another node's pod CIDR
 * leaves by the kernel's default route; it goes into the tunnel like a pod's, with remote-node as
 * the identity the receiving node sees. CTX_ACT_OK: not tunnelled. */
static __always_inline int tunnel_from_host(struct __sk_buff *skb)
{
	struct iphdr *ip4 = ipv4_header(skb);

	if (!ip4 || ip4->ttl <= 1)
		return CTX_ACT_OK;
	return tunnel_redirect_v4(skb, ip4, TUNNEL_IDENTITY_REMOTE_NODE);
}

#endif /* MEMBRANE_TUNNEL_H */
