/* SPDX-License-Identifier: GPL-2.0 */
/* L7 proxies and tunnel routing (routingMode=tunnel; proxy.h, tunnel.h).
 *
 * The proxies are transparent: what they send leaves the node's IP stack with a pod's address as
 * its source — the egress proxy's upstream connection from the client's address, the ingress
 * proxy's answers to a client on another node from the server's. A pod's own packets for another
 * node's pod CIDR go into the tunnel at from_container and never meet the stack's routes; these do,
 * and the stack knows no route to remote pods in tunnel routing (the default route ends at the
 * underlay's router, which does not know pod CIDRs either). So to_netdev puts a packet with a local
 * endpoint's source address into the tunnel as that endpoint's from_container would, the endpoint's
 * identity in the VNI: the egress proxy's upstream connection then meets the destination's ingress
 * policy (and its ingress proxy) with the client's identity, not the node's, as Cilium's proxy
 * upstream does by carrying the source identity in its socket mark.
 *
 * TCP segment sizes need nothing here: the pods' MTU (1450) is what the two ends announce.
 */
#ifndef MEMBRANE_PROXY_TUNNEL_H
#define MEMBRANE_PROXY_TUNNEL_H

#include "common.h"
#include "endpoints.h"
#include "ipv4.h"
#include "tunnel.h"

/* to_netdev: a packet from the stack whose source `saddr` (network order) is a local endpoint's
 * address, towards another node's pod CIDR: into the tunnel. CTX_ACT_OK: not tunnelled (no local
 * endpoint has the address, no tunnel leads to the destination, or its TTL is spent). */
static __always_inline int proxy_tunnel_from_stack(struct __sk_buff *skb, __u32 saddr)
{
	struct endpoint_info *ep;
	struct iphdr *ip4;

	ep = lookup_ip4_endpoint(saddr);
	if (!ep)
		return CTX_ACT_OK;
	ip4 = ipv4_header(skb);
	if (!ip4 || ip4->ttl <= 1)
		return CTX_ACT_OK;
	return tunnel_redirect_v4(skb, ip4, ep->sec_identity);
}

#endif /* MEMBRANE_PROXY_TUNNEL_H */
