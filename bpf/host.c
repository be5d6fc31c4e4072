// SPDX-License-Identifier: GPL-2.0
/* Programs for the node's underlay device (eth1): services reached from outside the cluster and
 * BPF masquerade.
 *
 *   from_netdev  tc ingress: packets arriving at the node
 *   to_netdev    tc egress:  packets leaving the node
 *
 * from_netdev, in this order:
 *   1. a reply to a connection this node source-NATed (NAT_DIR_IN in mb_nat, addressed to the
 *      node IP): the destination is restored (the pod for masquerade, the client for NodePort,
 *      whose reply also gets the frontend back as its source), then the packet goes to a local
 *      pod's lxc or back out of the device;
 *   (host routing, HOST_F_HOST_ROUTING) then a packet for a local pod gets its ingress policy
 *      here and goes straight into the pod's namespace (fib.h, to_endpoint.h);
 *   2. a TCP/UDP packet to a service frontend (scope ext: node IP + nodePort, ExternalIP, LB
 *      IP): a backend is chosen as lb.h does for pods (CT_SERVICE entry keyed by the frontend
 *      tuple, affinity, maglev or random) and the packet is translated:
 *        - local backend: DNAT, redirect to its lxc; its replies leave through the stack and
 *          to_netdev gives them the frontend as source (NAT_DIR_REV_DNAT);
 *        - remote backend (SNAT mode): DNAT and SNAT to node IP:allocated port (nat.h), back out
 *          of the device; the reply comes back to this node (case 1);
 *        - externalTrafficPolicy=Local: only local backends are used (the agent gives no
 *          others), the client's address is kept;
 *        - no backend: dropped, DROP_NO_SERVICE (158).
 * to_netdev:
 *   1. a reply of a locally served frontend connection: source back to the frontend;
 *   2. masquerade (HOST_F_MASQUERADE): a packet from a local endpoint to a destination outside
 *      ipv4NativeRoutingCIDR that is not a node (ipcache identity host / remote-node) leaves
 *      with the node IP and an allocated port (ICMP echo: identifier) as its source; with
 *      ip-masq-agent (HOST_F_IP_MASQ_AGENT) also not when a non-masquerade CIDR in mb_ipmasq_v4
 *      covers the destination (ipmasq.h).
 * Host firewall (host_firewall.h, hostFirewall.enabled): what from_netdev leaves to the node for
 * its own addresses meets the host endpoint's ingress, and what the node sends (source node IP)
 * its egress, at to_netdev.
 * Both write Hubble's from-network / to-network traces as monitor aggregation lets them (netdev_trace.h).
 * Everything else passes untouched. Configuration: mb_host_config (node IP, native routing
 * CIDR, flags), written by the loader before the programs are attached.
 */
#include <linux/if_packet.h>

#include "common.h"
#include "drop.h"
#include "maps.h"
#include "endpoints.h"
#include "metrics.h"
#include "eth.h"
#include "ipv4.h"
#include "ipcache.h"
#include "l4.h"
#include "conntrack.h"
#include "lb.h"
#include "nat.h"
#include "ipmasq.h"
#include "tunnel.h"
#include "egress_gw.h"
#include "ipip.h"
#include "fib.h"
#include "endpoint_policy.h"
#include "to_endpoint.h"
#include "host_firewall.h"
#include "proxy.h"
#include "proxy_tunnel.h"
#include "netdev_trace.h"
#include "netdev_pass.h"

#define IDENTITY_REMOTE_NODE 6

static __always_inline struct host_config *host_config(void)
{
	__u32 zero = 0;
	struct host_config *cfg = bpf_map_lookup_elem(&mb_host_config, &zero);

	return cfg && cfg->node_ip ? cfg : NULL;
}

static __always_inline int host_drop(struct __sk_buff *skb, __u8 dir, int reason)
{
	update_metrics(skb->len, dir, (__u8)reason);
	return CTX_ACT_DROP;
}

/* Send a translated packet on: into a local pod (egress of its lxc, where to_container does
 * conntrack and policy), into the tunnel for another node's pod CIDR in tunnel routing
 * (tunnel.h; the node's own address is the source, so remote-node is the identity), or out of
 * the device towards the FIB's next hop. */
static __always_inline int host_deliver(struct __sk_buff *skb, __u8 dir)
{
	struct endpoint_info *ep;
	struct ethhdr *eth;
	struct iphdr *ip4;
	int ret;

	ip4 = ipv4_header(skb);
	if (!ip4)
		return host_drop(skb, dir, DROP_INVALID);
	if (ip4->ttl <= 1)
		return CTX_ACT_OK; /* the kernel answers with time exceeded */
	ep = lookup_ip4_endpoint(ip4->daddr);
	update_metrics(skb->len, dir, REASON_FORWARDED);
	if (!ep) {
		ret = tunnel_redirect_v4(skb, ip4, IDENTITY_REMOTE_NODE);
		if (ret != CTX_ACT_OK)
			return ret;
		ip4 = ipv4_header(skb); /* IPIP (ipip.h) may have resized the packet */
		if (!ip4)
			return host_drop(skb, dir, DROP_INVALID);
		/* The FIB's device (cilium_wg0 with WireGuard), never around its blackholes (fib.h). */
		ret = fib_forward_translated_v4(skb, ip4);
		if (ret == CTX_ACT_DROP)
			return host_drop(skb, dir, DROP_FIB_LOOKUP);
		if (ret != CTX_ACT_OK)
			return ret;
		ipv4_dec_ttl(ip4);
		return bpf_redirect_neigh(skb->ifindex, NULL, 0, 0);
	}
	ipv4_dec_ttl(ip4);
	eth = ctx_data(skb);
	if (!PKT_HAS(eth, sizeof(*eth), ctx_data_end(skb)))
		return host_drop(skb, dir, DROP_INVALID);
	eth_set_macs(eth, ep->lxc_mac, ep->pod_mac);
	return bpf_redirect(ep->ifindex, 0);
}

/* Host routing (fib.h): a packet from the network for local endpoint `ep`, straight into its
 * namespace after its ingress policy (to_endpoint.h); a TTL about to expire goes to the kernel. */
static __always_inline int host_deliver_peer(struct __sk_buff *skb, const struct endpoint_info *ep)
{
	__u32 ifindex = ep->ifindex;
	struct ethhdr *eth;
	struct iphdr *ip4;

	ip4 = ipv4_header(skb);
	if (!ip4)
		return host_drop(skb, METRIC_INGRESS, DROP_INVALID);
	if (ip4->ttl <= 1)
		return CTX_ACT_OK;
	ipv4_dec_ttl(ip4);
	eth = ctx_data(skb);
	if (!PKT_HAS(eth, sizeof(*eth), ctx_data_end(skb)))
		return host_drop(skb, METRIC_INGRESS, DROP_INVALID);
	eth_set_macs(eth, ep->lxc_mac, ep->pod_mac);
	return to_endpoint_redirect_peer(skb, ifindex);
}

/* Account a reply on the frontend connection's CT_SERVICE entry (keeps its lifetime right). */
static __always_inline void host_service_reply(__u32 client, __u32 frontend, __u16 cport, __u16 fport, __u8 proto,
					       __u8 tcp_flags, __u32 bytes)
{
	struct ct_entry *entry;
	struct ct_key key;

	lb4_ct_key(&key, client, frontend, cport, fport, proto, CT_SERVICE);
	entry = bpf_map_lookup_elem(&mb_ct, &key);
	if (entry)
		ct_account(entry, ct_now(), proto, tcp_flags, bytes, 1);
}

/* A reply to a connection we source-NATed: restore its destination (and for NodePort its
 * source), then deliver it. */
static __always_inline int host_reverse_snat(struct __sk_buff *skb, struct lb4_tuple *t, const struct nat_entry *e)
{
	__u32 addr = e->addr, rev_addr = e->rev_addr;
	__u16 port = e->port, rev_port = e->rev_port, flags = e->flags;
	int ret;

	ret = nat4_rewrite(skb, t, 1, addr, port);
	if (ret == REASON_FORWARDED && (flags & NAT_F_NODEPORT)) {
		host_service_reply(addr, rev_addr, port, rev_port, t->proto, t->tcp_flags, skb->len);
		ret = nat4_rewrite(skb, t, 0, rev_addr, rev_port);
	}
	if (ret != REASON_FORWARDED)
		return host_drop(skb, METRIC_INGRESS, ret);
	return host_deliver(skb, METRIC_INGRESS);
}

/* A packet from outside to a service frontend (see the top of the file). */
static __always_inline int host_nodeport(struct __sk_buff *skb, struct lb4_tuple *t, const struct host_config *cfg)
{
	struct ct_entry *entry, fresh = {};
	struct nat_entry in = {}, rev = {}, *old;
	struct lb_backend *be = NULL;
	struct lb_svc_value *svc;
	struct lb_svc_key key = {};
	struct nat_key nkey;
	struct ct_key ckey;
	__u32 now, backend_id, be_addr, frontend = t->daddr, node_ip = cfg->node_ip;
	__u16 be_port, fport = t->dport, svc_flags;
	int ret;

	key.address = t->daddr;
	key.dport = t->dport;
	key.proto = t->proto;
	key.scope = LB_SCOPE_EXT;
	svc = bpf_map_lookup_elem(&mb_lb_svc, &key);
	if (!svc)
		return CTX_ACT_OK;
	svc_flags = svc->flags;
	now = ct_now();
	lb4_ct_key(&ckey, t->saddr, t->daddr, t->sport, t->dport, t->proto, CT_SERVICE);
	entry = bpf_map_lookup_elem(&mb_ct, &ckey);
	if (entry && ct_live(entry, now, t->proto, t->tcp_flags)) {
		backend_id = entry->backend_id;
		be = bpf_map_lookup_elem(&mb_lb_be, &backend_id);
		if (be)
			ct_account(entry, now, t->proto, t->tcp_flags, skb->len, 0);
	}
	if (!be) {
		backend_id = lb4_select_backend(&key, svc, t, now);
		if (backend_id)
			be = bpf_map_lookup_elem(&mb_lb_be, &backend_id);
		if (!be)
			return host_drop(skb, METRIC_INGRESS, DROP_NO_SERVICE);
		fresh.backend_id = backend_id;
		fresh.rev_nat_index = svc->rev_nat_index;
		ct_account(&fresh, now, t->proto, t->tcp_flags, skb->len, 0);
		bpf_map_update_elem(&mb_ct, &ckey, &fresh, BPF_ANY);
	}
	be_addr = be->address;
	be_port = be->port;

	if (lookup_ip4_endpoint(be_addr)) {
		/* Local backend: its replies leave through to_netdev, which restores the frontend. */
		nat4_key(&nkey, be_addr, t->saddr, be_port, t->sport, t->proto, NAT_DIR_REV_DNAT);
		old = bpf_map_lookup_elem(&mb_nat, &nkey);
		if (!old || old->addr != frontend || old->port != fport) {
			rev.addr = frontend;
			rev.port = fport;
			rev.flags = NAT_F_NODEPORT;
			rev.created = now;
			bpf_map_update_elem(&mb_nat, &nkey, &rev, BPF_ANY);
		}
		ret = nat4_rewrite(skb, t, 1, be_addr, be_port);
		if (ret != REASON_FORWARDED)
			return host_drop(skb, METRIC_INGRESS, ret);
		return host_deliver(skb, METRIC_INGRESS);
	}
	if (svc_flags & LB_F_ETP_LOCAL)
		return host_drop(skb, METRIC_INGRESS, DROP_NO_SERVICE);

	/* Remote backend, SNAT mode: the reply must come back through this node. */
	ret = nat4_rewrite(skb, t, 1, be_addr, be_port);
	if (ret != REASON_FORWARDED)
		return host_drop(skb, METRIC_INGRESS, ret);
	in.rev_addr = frontend;
	in.rev_port = fport;
	in.flags = NAT_F_NODEPORT;
	ret = nat4_snat(skb, t, node_ip, &in);
	if (ret != REASON_FORWARDED)
		return host_drop(skb, METRIC_INGRESS, ret);
	return host_deliver(skb, METRIC_INGRESS);
}

SEC("tc")
int from_netdev(struct __sk_buff *skb)
{
	void *data, *data_end;
	struct ethhdr *eth;
	struct endpoint_info *ep;
	struct host_config *cfg;
	struct nat_entry *e;
	struct lb4_tuple t;
	struct nat_key key;
	int ret;

	cfg = host_config();
	/* IP-in-IP from another node (ipip.h): strip the outer header, then as if it came plain.
	 * First, before this function reads the packet (see ipip_from_node). */
	if (cfg && ipip_from_node(skb, cfg->node_ip) < 0)
		return host_drop(skb, METRIC_INGRESS, DROP_INVALID);
	data = ctx_data(skb);
	data_end = ctx_data_end(skb);
	eth = data;
	if (!PKT_HAS(eth, sizeof(*eth), data_end) || eth->h_proto != bpf_htons(ETH_P_IP))
		return CTX_ACT_OK;
	if (!cfg || !nat4_tuple(skb, &t))
		return CTX_ACT_OK;
	netdev_trace(skb, TRACE_FROM_NETWORK, 0); /* Hubble's from-network (netdev_trace.h) */
	/* One endpoint lookup for both tests below (issue 19: a hash lookup per packet less). */
	ep = lookup_ip4_endpoint(t.daddr);
	/* Replies to the node IP, and on an egress gateway to its egress IPs (egress_gw.h). */
	if (t.daddr == cfg->node_ip || !ep) {
		nat4_key(&key, t.saddr, t.daddr, t.sport, t.dport, t.proto, NAT_DIR_IN);
		e = bpf_map_lookup_elem(&mb_nat, &key);
		if (e)
			return host_reverse_snat(skb, &t, e);
	}
	/* eBPF host routing (fib.h): a packet for a local pod goes straight to its lxc device,
	 * whose to_container does conntrack and ingress policy. Only frames addressed to us. */
	if ((cfg->flags & HOST_F_HOST_ROUTING) && skb->pkt_type == PACKET_HOST && ep)
		return host_deliver_peer(skb, ep);
	if (t.proto != IPPROTO_ICMP) {
		ret = host_nodeport(skb, &t, cfg);
		if (ret != CTX_ACT_OK)
			return ret;
	}
	/* Not a service: for the node itself, the host firewall's ingress (host_firewall.h). */
	return host_fw_from_netdev(skb);
}

/* A packet with the node IP as source that is service traffic, not the node's own: a NodePort
 * request source-NATed towards a remote backend (its reply is expected by NAT_DIR_IN), or the reply
 * of a frontend connection leaving with the frontend as source (its CT_SERVICE entry). */
static __always_inline int host_forwarded_service(const struct lb4_tuple *t)
{
	struct nat_key nkey;
	struct ct_key ckey;

	nat4_key(&nkey, t->daddr, t->saddr, t->dport, t->sport, t->proto, NAT_DIR_IN);
	if (bpf_map_lookup_elem(&mb_nat, &nkey))
		return 1;
	lb4_ct_key(&ckey, t->daddr, t->saddr, t->dport, t->sport, t->proto, CT_SERVICE);
	return bpf_map_lookup_elem(&mb_ct, &ckey) != NULL;
}

static __always_inline int to_netdev_v4(struct __sk_buff *skb, __u32 *report)
{
	void *data = ctx_data(skb), *data_end = ctx_data_end(skb);
	struct ethhdr *eth = data;
	struct nat_entry *e, in = {};
	struct host_config *cfg;
	struct lb4_tuple t;
	struct nat_key key;
	__u32 addr, node_ip, snat_addr;
	__u16 port;
	int ret;

	if (!PKT_HAS(eth, sizeof(*eth), data_end) || eth->h_proto != bpf_htons(ETH_P_IP))
		return CTX_ACT_OK;
	cfg = host_config();
	if (!cfg || !nat4_tuple(skb, &t))
		return CTX_ACT_OK;
	node_ip = cfg->node_ip;
	/* An egress L7 proxy's upstream connection to another node: its replies come back to the proxy. */
	proxy_track_upstream(skb, t.saddr, t.daddr, t.sport, t.dport, t.proto, t.tcp_flags);
	if (t.saddr == node_ip) {
		/* The node's own traffic: the host firewall's egress (host_firewall.h), unless it is service
		 * traffic this node forwards (redirected out of the device, it passes here too). */
		if (!host_forwarded_service(&t)) {
			ret = host_fw_to_netdev(skb, report);
			if (ret != CTX_ACT_OK)
				return ret;
		}
		/* Node to a pod on another node: into the tunnel when one leads there (tunnel.h). */
		ret = tunnel_from_host(skb);
		return ret == CTX_ACT_DROP ? host_drop(skb, METRIC_EGRESS, DROP_INVALID) : ret;
	}
	if (t.proto != IPPROTO_ICMP) {
		nat4_key(&key, t.saddr, t.daddr, t.sport, t.dport, t.proto, NAT_DIR_REV_DNAT);
		e = bpf_map_lookup_elem(&mb_nat, &key);
		if (e) {
			addr = e->addr;
			port = e->port;
			host_service_reply(t.daddr, addr, t.dport, port, t.proto, t.tcp_flags, skb->len);
			ret = nat4_rewrite(skb, &t, 0, addr, port);
			if (ret != REASON_FORWARDED)
				return host_drop(skb, METRIC_EGRESS, ret);
			return CTX_ACT_OK;
		}
	}
	/* A transparent proxy's packet with a pod's address, for a remote pod: the tunnel (proxy_tunnel.h). */
	ret = proxy_tunnel_from_stack(skb, t.saddr);
	if (ret != CTX_ACT_OK)
		return ret == CTX_ACT_DROP ? host_drop(skb, METRIC_EGRESS, DROP_INVALID) : ret;
	if (!(cfg->flags & HOST_F_MASQUERADE))
		return CTX_ACT_OK;
	/* Egress gateway: a pod's packet (of any node) this node is the gateway for (egress_gw.h). */
	snat_addr = egress_gw_snat_addr(t.saddr, t.daddr, node_ip);
	if (snat_addr == EGW_SNAT_NO_IP)
		return host_drop(skb, METRIC_EGRESS, DROP_NO_EGRESS_IP);
	if (snat_addr)
		goto snat;
	snat_addr = node_ip;
	if (!lookup_ip4_endpoint(t.saddr))
		return CTX_ACT_OK;
	if (ipv4_in_prefix(t.daddr, cfg->native_cidr, cfg->native_prefix))
		return CTX_ACT_OK;
	if ((cfg->flags & HOST_F_IP_MASQ_AGENT) && ipmasq_exempt(t.daddr))
		return CTX_ACT_OK;
	if (ipcache_is_node(t.daddr)) /* nodes are reached with the pod's own address */
		return CTX_ACT_OK;
snat:
	ret = nat4_snat(skb, &t, snat_addr, &in);
	if (ret != REASON_FORWARDED)
		return host_drop(skb, METRIC_EGRESS, ret);
	return CTX_ACT_OK;
}

SEC("tc")
int to_netdev(struct __sk_buff *skb)
{
	__u32 report = 0; /* the host firewall's conntrack (to-network from medium on: netdev_trace.h) */
	int traced, ret;

	if (netdev_pass_taken(skb)) /* a pod's packet host routing sent, nothing to do (netdev_pass.h) */
		return CTX_ACT_OK;
	traced = netdev_traced_by_pod(skb);
	ret = to_netdev_v4(skb, &report);

	if (ret == CTX_ACT_OK && !traced) /* leaves through this device: Hubble's to-network (netdev_trace.h) */
		netdev_trace(skb, TRACE_TO_NETWORK, report);
	return ret;
}

char _license[] SEC("license") = "GPL";
