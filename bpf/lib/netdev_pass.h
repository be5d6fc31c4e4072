/* SPDX-License-Identifier: GPL-2.0 */
/* to_netdev's fast exit for a pod's packet that host routing already sent (issue 19).
 *
 * With eBPF host routing, from_container sends a pod's packet for another node straight to the
 * device the FIB names (fib.h), where to_netdev runs again. For most such packets to_netdev has
 * nothing to do, yet it parsed the tuple and looked up mb_nat (NAT_DIR_REV_DNAT), the egress
 * gateway trie and mb_endpoints (masquerade, netdev_traced_by_pod): ~0.3 us a packet, 8 packets
 * of a TCP_CRR connection across nodes. from_container knows, or finds with one lookup, that there
 * is nothing to do: it marks such a packet MARK_MAGIC_NETDEV_PASS (proxy.h lists the marks) and
 * to_netdev returns at once, clearing the mark.
 *
 * Marked (netdev_pass_mark), only after a successful FIB redirect, when all hold:
 *   - no NAT_DIR_REV_DNAT entry in mb_nat for its tuple (TCP/UDP): a local NodePort backend's
 *     replies leave through to_netdev, which gives them the frontend as source (host.c). Such an
 *     entry is only ever written for the reply of a connection from outside, so a packet of a
 *     connection the pod started needs no lookup: conntrack found its CT_EGRESS entry
 *     (ESTABLISHED), or it is a pure TCP SYN. Every other packet (replies, ICMP errors, a new UDP
 *     flow) is looked up here, where to_netdev would look it up;
 *   - to_netdev would not masquerade it: masquerade is off, or the destination is inside
 *     ipv4NativeRoutingCIDR; and no egress gateway row makes this node the pod's gateway for the
 *     destination (egress_gw_from_pod's EGW_PASS_SNAT: to_netdev SNATs to the egress IP).
 * Left to to_netdev as before: destinations outside the native CIDR (masquerade, ip-masq-agent
 * and node tests need their lookups), NodePort replies, everything without host routing.
 * What to_netdev skips is otherwise a no-op for such a packet: its source is the pod (never the
 * node IP: no host firewall, no forwarded-service test), it carries no proxy mark, tunnel routing
 * already declined it in from_container (proxy_tunnel_from_stack would ask the same), and its
 * to-network trace was from_container's (netdev_traced_by_pod).
 *
 * The mark is kept by bpf_redirect and bpf_redirect_neigh (no namespace is crossed) and dropped
 * by to_netdev. to_netdev still checks that the source is not the node IP, so no local process
 * setting this mark (SO_MARK, needs CAP_NET_ADMIN) and no packet built by a device on the way
 * (WireGuard's outer packets come from the node IP) gets past the host firewall with it.
 */
#ifndef MEMBRANE_NETDEV_PASS_H
#define MEMBRANE_NETDEV_PASS_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>

#include "common.h"
#include "ipv4.h"
#include "l4.h"
#include "maps.h"
#include "nat.h"
#include "proxy.h"

/* Does to_netdev's NodePort reverse DNAT apply to this TCP/UDP packet (l4: its first 4 bytes)? */
static __always_inline int netdev_pass_rev_dnat(const struct iphdr *ip4, const __u16 *ports)
{
	struct nat_key key;

	nat4_key(&key, ip4->saddr, ip4->daddr, ports[0], ports[1], ip4->protocol, NAT_DIR_REV_DNAT);
	return bpf_map_lookup_elem(&mb_nat, &key) != NULL;
}

/* from_container, after fib_redirect_v4 redirected the packet: `trace_reason` is its conntrack
 * result (TRACE_REASON_*), `egw_snat` non-zero when this node is its egress gateway. A global
 * function: verified once, not on every path of from_container. Always returns 0. */
__attribute__((noinline)) int netdev_pass_mark(struct __sk_buff *skb, __u32 trace_reason, __u32 egw_snat)
{
	struct host_config *cfg;
	struct iphdr *ip4;
	__u16 ports[2];
	__u32 zero = 0, off;
	__u8 flags = 0;

	if (egw_snat)
		return 0;
	ip4 = ipv4_header(skb);
	if (!ip4)
		return 0;
	cfg = bpf_map_lookup_elem(&mb_host_config, &zero);
	if (!cfg)
		return 0;
	if ((cfg->flags & HOST_F_MASQUERADE) && !ipv4_in_prefix(ip4->daddr, cfg->native_cidr, cfg->native_prefix))
		return 0;
	if (trace_reason != TRACE_REASON_ESTABLISHED &&
	    (ip4->protocol == IPPROTO_TCP || ip4->protocol == IPPROTO_UDP)) {
		off = ETH_HLEN + ip4->ihl * 4;
		if (bpf_skb_load_bytes(skb, off, ports, sizeof(ports)) < 0)
			return 0;
		if (ip4->protocol == IPPROTO_TCP && bpf_skb_load_bytes(skb, off + 13, &flags, 1) < 0)
			return 0;
		/* A pure SYN starts the pod's own connection; anything else may be a NodePort reply. */
		if (!(ip4->protocol == IPPROTO_TCP && (flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN &&
		      (trace_reason == TRACE_REASON_NEW || trace_reason == TRACE_REASON_REOPENED)) &&
		    netdev_pass_rev_dnat(ip4, ports))
			return 0;
	}
	skb->mark = MARK_MAGIC_NETDEV_PASS;
	return 0;
}

/* to_netdev, first: 1 when from_container marked the packet and it is a pod's (source not the node
 * IP), so there is nothing to do. Drops the mark either way. */
static __always_inline int netdev_pass_taken(struct __sk_buff *skb)
{
	struct host_config *cfg;
	struct ethhdr *eth;
	struct iphdr *ip4;
	__u32 zero = 0;

	if (skb->mark != MARK_MAGIC_NETDEV_PASS)
		return 0;
	skb->mark = 0;
	eth = ctx_data(skb);
	if (!PKT_HAS(eth, sizeof(*eth), ctx_data_end(skb)) || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	ip4 = ipv4_header(skb);
	cfg = bpf_map_lookup_elem(&mb_host_config, &zero);
	return ip4 && cfg && cfg->node_ip && ip4->saddr != cfg->node_ip;
}

#endif /* MEMBRANE_NETDEV_PASS_H */
