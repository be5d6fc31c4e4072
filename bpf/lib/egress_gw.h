/* SPDX-License-Identifier: GPL-2.0 */
/* Egress gateway (CiliumEgressGatewayPolicy; rows in mb_egress_v4, written by the agent from
 * membrane.egressgw.rows):
 *
 *   source node   from_container: a pod's packet for a destination its row covers goes to the
 *                 gateway node through the collect-metadata VXLAN device (the pod's identity as
 *                 VNI), in native and tunnel routing alike; no gateway node: drop 194. When this
 *                 node is the gateway the packet takes the normal path to the node device.
 *   gateway node  from_overlay: such a packet (not for a local endpoint) is handed to the kernel,
 *                 which routes it to the node device; no egress IP here: drop 204.
 *                 to_netdev: it is source-NATed to the egress IP (nat.h), not the node IP.
 *                 from_netdev: the reply's NAT_DIR_IN entry (keyed by the egress IP) restores the
 *                 pod as destination and host_deliver sends it to the pod's node (natively, or
 *                 into the tunnel in tunnel routing).
 *
 * Excluded and in-cluster destinations have rows with gateway 0.0.0.1: the normal path.
 * from_container is near the verifier's budget: its part is a global function (verified once).
 */
#ifndef MEMBRANE_EGRESS_GW_H
#define MEMBRANE_EGRESS_GW_H

#include <linux/if_packet.h>
#include <linux/ip.h>

#include "common.h"
#include "ipv4.h"
#include "maps.h"

#define DROP_NO_EGRESS_GATEWAY 194 /* "No egress gateway found" */
#define DROP_NO_EGRESS_IP      204 /* "No Egress IP configured" */

#define EGW_PASS       0 /* no row, excluded, or this node is the gateway: the normal path */
#define EGW_REDIRECTED 1 /* encapsulated toward the gateway node; return CTX_ACT_REDIRECT */
#define EGW_PASS_SNAT  2 /* this node is the gateway: the normal path, to_netdev SNATs to the egress IP */

#define EGW_TUNNEL_TTL 64

static __always_inline struct egress_value *egress_gw_lookup(__u32 saddr, __u32 daddr)
{
	struct egress_key key = { .prefixlen = EGRESS_PREFIX_STATIC + 32, .saddr = saddr, .daddr = daddr };

	return bpf_map_lookup_elem(&mb_egress_v4, &key);
}

static __always_inline __u32 egress_gw_node_ip(void)
{
	__u32 zero = 0;
	struct host_config *host = bpf_map_lookup_elem(&mb_host_config, &zero);

	return host ? host->node_ip : 0;
}

/* from_container, for a packet not addressed to a local endpoint (TTL > 1, checked by the
 * caller). Returns EGW_PASS, EGW_PASS_SNAT, EGW_REDIRECTED or a drop reason (DROP_*). Invalidates packet
 * pointers. */
__attribute__((noinline)) int egress_gw_from_pod(struct __sk_buff *skb, __u32 src_identity)
{
	struct bpf_tunnel_key tkey = {};
	struct tunnel_config *cfg;
	struct egress_value *row;
	struct iphdr *ip4;
	__u32 zero = 0, gateway, ifindex;

	ip4 = ipv4_header(skb);
	if (!ip4 || ip4->ttl <= 1)
		return EGW_PASS;
	row = egress_gw_lookup(ip4->saddr, ip4->daddr);
	if (!row)
		return EGW_PASS;
	gateway = row->gateway_ip;
	if (gateway == EGRESS_GATEWAY_EXCLUDED)
		return EGW_PASS;
	if (gateway == EGRESS_GATEWAY_NOT_FOUND)
		return DROP_NO_EGRESS_GATEWAY;
	if (gateway == egress_gw_node_ip())
		return row->egress_ip ? EGW_PASS_SNAT : DROP_NO_EGRESS_IP;
	cfg = bpf_map_lookup_elem(&mb_tunnel_config, &zero);
	if (!cfg || !cfg->ifindex)
		return DROP_NO_EGRESS_GATEWAY; /* no VXLAN device to reach it (the agent creates one) */
	ifindex = cfg->ifindex;
	tkey.remote_ipv4 = bpf_ntohl(gateway);
	tkey.tunnel_id = src_identity;
	tkey.tunnel_ttl = EGW_TUNNEL_TTL;
	ipv4_dec_ttl(ip4);
	if (bpf_skb_set_tunnel_key(skb, &tkey, sizeof(tkey), BPF_F_ZERO_CSUM_TX) < 0)
		return DROP_INVALID;
	bpf_redirect(ifindex, 0);
	return EGW_REDIRECTED;
}

/* from_overlay, for a decapsulated packet not addressed to a local endpoint: EGW_PASS when it is
 * not egress gateway traffic for this node; EGW_REDIRECTED when it is (the caller hands it to the
 * kernel, marked as addressed to this host); DROP_NO_EGRESS_IP when this node has no egress IP for it. */
static __always_inline int egress_gw_at_gateway(struct __sk_buff *skb, const struct iphdr *ip4)
{
	struct egress_value *row = egress_gw_lookup(ip4->saddr, ip4->daddr);

	if (!row || row->gateway_ip != egress_gw_node_ip() || !row->gateway_ip)
		return EGW_PASS;
	if (!row->egress_ip)
		return DROP_NO_EGRESS_IP;
	/* The inner frame still carries the source node's MACs: the kernel would not take it. */
	bpf_skb_change_type(skb, PACKET_HOST);
	return EGW_REDIRECTED;
}

/* to_netdev on the gateway: the address to source-NAT a pod's packet (saddr -> daddr) to; 0 when
 * no row makes this node its gateway; EGW_SNAT_NO_IP when the row has no egress IP (drop 204). */
#define EGW_SNAT_NO_IP 0xffffffff

static __always_inline __u32 egress_gw_snat_addr(__u32 saddr, __u32 daddr, __u32 node_ip)
{
	struct egress_value *row = egress_gw_lookup(saddr, daddr);

	if (!row || row->gateway_ip != node_ip)
		return 0;
	return row->egress_ip ? row->egress_ip : EGW_SNAT_NO_IP;
}

#endif /* MEMBRANE_EGRESS_GW_H */
