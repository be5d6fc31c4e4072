/* SPDX-License-Identifier: GPL-2.0 */
/* Redirection of a connection to a node-local L7 proxy (HTTP, DNS, Kafka; membrane/proxy).
 *
 * A policy slot may carry a proxy port (mb_policy, policy.h); a new connection that slot
 * allows records it in its conntrack entry (ct_entry.proxy_port), so every later packet of the
 * connection takes the same way. The packet is then handed to the node's IP stack with
 * skb->mark = proxy_port << 16 | MARK_MAGIC_TO_PROXY, where the agent's rules deliver it to the
 * proxy's listening socket with its original destination kept (datapath/linux/tproxy.py):
 *
 *   ip rule fwmark 0x200/0xf00 lookup 2004;  ip route local 0.0.0.0/0 dev lo table 2004
 *   nft: meta mark <mark of port P> tproxy ip to :P   (an established socket first, else P's listener)
 *
 * Why nftables TPROXY rather than bpf_sk_assign at tc: both need the mark and the local route,
 * but TPROXY also finds the proxy's *established* transparent sockets (the accepted client
 * side and the upstream side bound to the client's address) in the kernel, so the program only
 * sets a mark; with bpf_sk_assign every packet would need two socket lookups in an already large
 * program, and the lookup key differs per direction. One nft rule per redirect is cheap.
 *
 * Egress (the pod's own L7 rules): from_container marks the packet and leaves it to the stack.
 * Ingress (the destination's L7 rules): the packet is at the destination's to_container (or
 * about to be redirected into its namespace); it goes back in through the ingress of the
 * destination's lxc device, addressed to that device's MAC, where from_container sees the mark
 * (a pod cannot set it: the veth scrubs the mark when a packet crosses namespaces) and lets it
 * into the stack.
 *
 * The proxies' upstream connections carry MARK_MAGIC_FROM_PROXY (ingress proxy) or
 * MARK_MAGIC_FROM_PROXY_EGRESS (SO_MARK, with the proxy port in the upper 16 bits). Where such a
 * connection is first seen — the local destination's ingress, or to_netdev for a destination on
 * another node — its conntrack entry gets CT_F_PROXY_UPSTREAM and the port, so the replies,
 * addressed to the client's own address that the transparent upstream socket uses, go to the
 * stack marked (from_container for a local destination; the client's ingress hook, back through
 * its lxc ingress, for a remote one) and reach that socket, not the client pod.
 *
 * Both proxies on one connection: the egress proxy's upstream connection meets the destination's
 * ingress policy like any packet, and when that policy redirects too, it goes on to the ingress
 * proxy (proxy_chain_egress below); across nodes the mark does not travel and the destination node
 * redirects it as any client's. Either way the ingress proxy sees the client's address, so its
 * identity, as Cilium's proxies carry the source identity in their socket mark. In tunnel routing the
 * proxies' packets for another node go into the tunnel at to_netdev (proxy_tunnel.h).
 */
#ifndef MEMBRANE_PROXY_H
#define MEMBRANE_PROXY_H

#include "common.h"
#include "conntrack.h"
#include "endpoints.h"
#include "eth.h"
#include "events.h"
#include "ipv4.h"

#define MARK_MAGIC_MASK       0x0F00
#define MARK_MAGIC_TO_PROXY   0x0200
#define MARK_MAGIC_FROM_PROXY 0x0A00        /* the ingress proxy's upstream connections */
#define MARK_MAGIC_FROM_PROXY_EGRESS 0x0B00 /* the egress proxy's upstream connections */
/* Not the proxy's: a pod's packet from_container sent out with host routing that to_netdev has
 * nothing to do for (netdev_pass.h). The whole mark, not only the magic nibble. */
#define MARK_MAGIC_NETDEV_PASS 0x0300

static __always_inline int mark_is(const struct __sk_buff *skb, __u32 magic)
{
	return (skb->mark & MARK_MAGIC_MASK) == magic;
}

static __always_inline __u16 mark_proxy_port(const struct __sk_buff *skb)
{
	return (__u16)(skb->mark >> 16);
}

/* Into the node's stack, marked for the proxy listening on ctx->proxy_port (host order). */
static __always_inline int proxy_to_stack(struct __sk_buff *skb, struct event_ctx *ctx)
{
	skb->mark = ((__u32)ctx->proxy_port << 16) | MARK_MAGIC_TO_PROXY;
	emit_trace(skb, ctx, TRACE_TO_PROXY);
	return CTX_ACT_OK;
}

/* An ingress redirect: back in through the destination endpoint's lxc device (see above). */
static __always_inline int proxy_divert_ingress(struct __sk_buff *skb, struct event_ctx *ctx)
{
	struct endpoint_info *ep;
	struct ethhdr *eth;
	struct iphdr *ip4;

	ip4 = ipv4_header(skb);
	if (!ip4)
		return CTX_ACT_DROP;
	ep = lookup_ip4_endpoint(ip4->daddr);
	if (!ep)
		return CTX_ACT_DROP;
	eth = ctx_data(skb);
	if (!PKT_HAS(eth, sizeof(*eth), ctx_data_end(skb)))
		return CTX_ACT_DROP;
	__builtin_memcpy(eth->h_dest, ep->lxc_mac, ETH_ALEN);
	skb->mark = ((__u32)ctx->proxy_port << 16) | MARK_MAGIC_TO_PROXY;
	emit_trace(skb, ctx, TRACE_TO_PROXY);
	return bpf_redirect(ep->ifindex, BPF_F_INGRESS);
}

/* to_netdev: an egress proxy's upstream connection to another node. Its first packet records the
 * connection as CT_EGRESS with CT_F_PROXY_UPSTREAM, so its replies, at the client's ingress hook,
 * go to the proxy; later packets are accounted (FIN/RST end the entry's long lifetime). Addresses
 * and ports in network byte order. */
static __always_inline void proxy_track_upstream(struct __sk_buff *skb, __u32 saddr, __u32 daddr, __u16 sport,
						 __u16 dport, __u8 protocol, __u8 tcp_flags)
{
	struct ct_entry *entry;
	struct ct_key key = {};

	if (!mark_is(skb, MARK_MAGIC_FROM_PROXY_EGRESS))
		return;
	key.saddr = saddr;
	key.daddr = daddr;
	key.sport = sport;
	key.dport = dport;
	key.protocol = protocol;
	key.direction = CT_EGRESS;
	if (ct_is_syn(protocol, tcp_flags)) {
		ct_create(&key, tcp_flags, skb->len, 0, mark_proxy_port(skb) | CT_PROXY_UPSTREAM);
		return;
	}
	entry = bpf_map_lookup_elem(&mb_ct, &key);
	if (entry)
		ct_account(entry, ct_now(), protocol, tcp_flags, skb->len, 0);
}

/* Chaining, on one node: the egress proxy's upstream connection (key: its first packet at the
 * destination's ingress hook, CT_INGRESS) meets a destination endpoint whose ingress policy
 * redirects it too. The connection's own entry (written by the caller) sends it on to the
 * destination's ingress proxy; the ingress proxy's answers, which the stack routes towards the
 * client's address and so to the client's ingress hook, must reach the egress proxy's upstream
 * socket instead: this records the connection as the client's, CT_EGRESS with
 * CT_F_PROXY_UPSTREAM and the egress proxy's port, as proxy_track_upstream does for a destination
 * on another node. Both proxies then judge the request, the ingress one seeing the client's address
 * and so its identity. */
static __always_inline void proxy_chain_egress(const struct ct_key *key, __u8 tcp_flags, __u32 bytes,
					       __u32 src_identity, __u16 egress_proxy_port)
{
	struct ct_key client = *key;

	client.direction = CT_EGRESS;
	ct_create(&client, tcp_flags, bytes, src_identity, egress_proxy_port | CT_PROXY_UPSTREAM);
}

#endif /* MEMBRANE_PROXY_H */
