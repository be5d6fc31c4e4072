/* SPDX-License-Identifier: GPL-2.0 */
/* Per-packet service load balancing (Cilium's lb4_* without socket LB), for traffic from pods.
 *
 * from_container: a TCP/UDP packet to a frontend in mb_lb_svc is translated to a backend before
 * conntrack and policy run, so the egress policy sees the backend (as Cilium does). The backend
 * of a connection is kept in a CT_SERVICE entry of mb_ct keyed by the frontend tuple; later
 * packets of the connection go to the same backend for as long as it is in mb_lb_be, even once
 * it left the service's slots (terminating, or removed from the service but still known). A new
 * connection picks a slot at random (1 + prandom % count), or through the service's maglev
 * table (a hash of the 5-tuple, without the source port under ClientIP affinity), or its
 * client's affinity entry. The connection's regular CT_EGRESS entry (client -> backend) records
 * the rev_nat_index.
 *
 * to_container: a reply whose connection carries a rev_nat_index gets the frontend back as its
 * source (mb_lb_revnat), and refreshes the CT_SERVICE entry (seen reply, closing flags).
 *
 * A frontend without backends refuses new connections (Cilium's service-no-backend-response
 * `reject`): the packet is counted and reported as dropped with DROP_NO_SERVICE (158), then
 * turned into an ICMP port unreachable sent back into the pod (lb4_reject), so the client's
 * connect() fails at once with ECONNREFUSED.
 * Hairpin (a pod reaching itself through a service, as Cilium does): once the backend chosen is
 * the client itself, from_container (after conntrack and policy, which see client -> client)
 * gives the packet IPV4_LOOPBACK (169.254.42.1) as its source, marks the connection's CT_EGRESS
 * entry CT_F_HAIRPIN, and delivers it to the pod's own lxc device (lb4_hairpin_snat). The server
 * socket sees 169.254.42.1 as its client; to_container takes that source as the pod's own
 * identity for ingress policy. The server's replies (to 169.254.42.1) go back to the pod's own
 * lxc device too, where to_container gives them the pod's address as destination again
 * (lb4_hairpin_reply) before conntrack, which then sees a reply of the client's connection and
 * restores the frontend as its source (lb4_rev_nat): the client socket sees VIP:port.
 *
 * Not handled: SCTP frontends (CRC32c checksum), non-first IP fragments, ICMP errors about a
 * translated connection.
 */
#ifndef MEMBRANE_LB_H
#define MEMBRANE_LB_H

#include <linux/in.h>
#include <linux/ip.h>

#include "common.h"
#include "conntrack.h"
#include "drop.h"
#include "ipv4.h"
#include "l4.h"
#include "maps.h"

#define DROP_WRITE_ERROR 141 /* "Error writing to packet" */
#define DROP_CSUM_L3     153 /* "Error while correcting L3 checksum" */
#define DROP_CSUM_L4     154 /* "Error while correcting L4 checksum" */
#define DROP_NO_SERVICE  158 /* "Service backend not found" */

#define LB_IP_CSUM_OFF  (ETH_HLEN + __builtin_offsetof(struct iphdr, check))
#define LB_IP_SADDR_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, saddr))
#define LB_IP_DADDR_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, daddr))
#define LB_TCP_CSUM     16 /* offset of the checksum in the TCP header */
#define LB_UDP_CSUM     6  /* ... in the UDP header */

#define IPV4_LOOPBACK bpf_htonl(0xa9fe2a01) /* 169.254.42.1: source of hairpin traffic (Cilium's) */
#define CT_F_HAIRPIN  (1 << 3) /* CT_EGRESS entry of a connection of a pod to itself via a service */

/* The packet's IPv4 5-tuple, when load balancing applies to it (TCP or UDP, first fragment). */
struct lb4_tuple {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8  proto;
	__u8  tcp_flags;
	__u16 l4_off; /* offset of the L4 header from the start of the frame */
};

/* Fill the tuple; returns 0 if the packet is not a candidate for translation. */
static __always_inline int lb4_tuple(struct __sk_buff *skb, struct lb4_tuple *t)
{
	struct iphdr *ip4 = ipv4_header(skb);
	struct l4_info l4;

	if (!ip4 || (ip4->protocol != IPPROTO_TCP && ip4->protocol != IPPROTO_UDP))
		return 0;
	if (ip4->frag_off & bpf_htons(IP_OFFSET_MASK))
		return 0;
	if (l4_extract(skb, ip4, &l4) != REASON_FORWARDED)
		return 0;
	t->saddr = ip4->saddr;
	t->daddr = ip4->daddr;
	t->sport = l4.sport;
	t->dport = l4.dport;
	t->proto = ip4->protocol;
	t->tcp_flags = l4.tcp_flags;
	t->l4_off = ETH_HLEN + ip4->ihl * 4;
	return 1;
}

static __always_inline void lb4_ct_key(struct ct_key *key, __u32 saddr, __u32 daddr, __u16 sport, __u16 dport,
				       __u8 proto, __u8 direction)
{
	__builtin_memset(key, 0, sizeof(*key));
	key->saddr = saddr;
	key->daddr = daddr;
	key->sport = sport;
	key->dport = dport;
	key->protocol = proto;
	key->direction = direction;
}

/* Replace the destination (dst = 1) or source address and port, fixing the IPv4 header checksum
 * and the L4 checksum (pseudo header included). Returns 0 or a DROP_* reason. Invalidates every
 * packet pointer. */
static __always_inline int lb4_rewrite(struct __sk_buff *skb, const struct lb4_tuple *t, int dst, __u32 new_addr,
				       __u16 new_port)
{
	__u32 old_addr = dst ? t->daddr : t->saddr;
	__u16 old_port = dst ? t->dport : t->sport;
	__u32 addr_off = dst ? LB_IP_DADDR_OFF : LB_IP_SADDR_OFF;
	__u32 port_off = t->l4_off + (dst ? 2 : 0);
	__u32 csum_off = t->l4_off + (t->proto == IPPROTO_TCP ? LB_TCP_CSUM : LB_UDP_CSUM);
	/* A UDP checksum of 0 means "none": keep it so, and never produce 0 from a real one. */
	__u64 l4_flags = t->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (old_addr != new_addr) {
		if (bpf_l4_csum_replace(skb, csum_off, old_addr, new_addr, l4_flags | BPF_F_PSEUDO_HDR | 4) < 0)
			return DROP_CSUM_L4;
		if (bpf_l3_csum_replace(skb, LB_IP_CSUM_OFF, old_addr, new_addr, 4) < 0)
			return DROP_CSUM_L3;
		if (bpf_skb_store_bytes(skb, addr_off, &new_addr, 4, 0) < 0)
			return DROP_WRITE_ERROR;
	}
	if (old_port != new_port) {
		if (bpf_l4_csum_replace(skb, csum_off, old_port, new_port, l4_flags | 2) < 0)
			return DROP_CSUM_L4;
		if (bpf_skb_store_bytes(skb, port_off, &new_port, 2, 0) < 0)
			return DROP_WRITE_ERROR;
	}
	return REASON_FORWARDED;
}

/* Slot 0 of the frontend, in the scope in-cluster clients use. */
static __always_inline struct lb_svc_value *lb4_lookup_service(struct lb_svc_key *key, const struct lb4_tuple *t)
{
	struct lb_svc_value *svc, *internal;

	__builtin_memset(key, 0, sizeof(*key));
	key->address = t->daddr;
	key->dport = t->dport;
	key->proto = t->proto;
	key->scope = LB_SCOPE_EXT;
	svc = bpf_map_lookup_elem(&mb_lb_svc, key);
	if (svc && (svc->flags & LB_F_TWO_SCOPES)) {
		key->scope = LB_SCOPE_INT;
		internal = bpf_map_lookup_elem(&mb_lb_svc, key);
		if (internal)
			return internal;
		key->scope = LB_SCOPE_EXT;
	}
	return svc;
}

/* murmur3's 32-bit finalizer over a running value. */
static __always_inline __u32 lb_mix(__u32 h, __u32 v)
{
	h ^= v;
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline __u32 lb4_hash(const struct lb4_tuple *t, int with_sport)
{
	__u32 h = lb_mix(0x9e3779b9, t->saddr);

	h = lb_mix(h, t->daddr);
	h = lb_mix(h, ((__u32)(with_sport ? t->sport : 0) << 16) | t->dport);
	return lb_mix(h, t->proto);
}

/* A backend from the service's maglev table (by ``hash``, for LB_F_MAGLEV services) or a random
 * slot; 0 if none. Context-free: the socket LB (sock_lb.h) uses it too. */
static __always_inline __u32 lb4_pick_backend(struct lb_svc_key *key, const struct lb_svc_value *svc, __u32 hash)
{
	struct lb_maglev_key mkey = { .rev_nat_index = svc->rev_nat_index };
	struct lb_maglev_value *mval;
	struct lb_svc_value *slot;

	if ((svc->flags & LB_F_MAGLEV) && svc->backend_id) {
		mkey.slot = hash % svc->backend_id;
		mval = bpf_map_lookup_elem(&mb_lb_maglev, &mkey);
		if (mval)
			return mval->backend_id;
	}
	if (svc->count) {
		key->backend_slot = (__u16)(bpf_get_prandom_u32() % svc->count) + 1;
		slot = bpf_map_lookup_elem(&mb_lb_svc, key);
		if (slot)
			return slot->backend_id;
	}
	return 0;
}

/* A backend for a new connection (0 if none): affinity, then maglev or random. */
static __always_inline __u32 lb4_select_backend(struct lb_svc_key *key, const struct lb_svc_value *svc,
						const struct lb4_tuple *t, __u32 now)
{
	struct lb_affinity_key akey = { .client_ip = t->saddr, .rev_nat_index = svc->rev_nat_index };
	int affinity = svc->flags & LB_F_AFFINITY;
	struct lb_affinity *aff, fresh = {};
	struct lb_backend *be;
	__u32 backend_id = 0;

	if (affinity) {
		aff = bpf_map_lookup_elem(&mb_lb_affinity, &akey);
		if (aff && aff->last_used + svc->affinity_timeout >= now) {
			be = bpf_map_lookup_elem(&mb_lb_be, &aff->backend_id);
			if (be && !(be->flags & LB_BE_F_TERMINATING))
				backend_id = aff->backend_id;
		}
	}
	if (!backend_id)
		backend_id = lb4_pick_backend(key, svc, (svc->flags & LB_F_MAGLEV) ? lb4_hash(t, !affinity) : 0);
	if (backend_id && affinity) {
		fresh.backend_id = backend_id;
		fresh.last_used = now;
		bpf_map_update_elem(&mb_lb_affinity, &akey, &fresh, BPF_ANY);
	}
	return backend_id;
}

/* Translate a packet from a pod to a service frontend into one to a backend. Returns
 * REASON_FORWARDED (translated or not a service; *rev_nat_index says which) or a DROP_*. */
static __always_inline int lb4_from_container(struct __sk_buff *skb, __u16 *rev_nat_index)
{
	struct ct_entry *entry, fresh = {};
	struct lb_svc_value *svc;
	struct lb_svc_key key;
	struct lb_backend *be = NULL;
	struct lb4_tuple t;
	struct ct_key ckey;
	__u32 now, backend_id, be_addr;
	__u16 be_port, revnat;

	*rev_nat_index = 0;
	if (!lb4_tuple(skb, &t))
		return REASON_FORWARDED;
	svc = lb4_lookup_service(&key, &t);
	if (!svc)
		return REASON_FORWARDED;
	revnat = svc->rev_nat_index;
	now = ct_now();
	lb4_ct_key(&ckey, t.saddr, t.daddr, t.sport, t.dport, t.proto, CT_SERVICE);
	entry = bpf_map_lookup_elem(&mb_ct, &ckey);
	if (entry && ct_live(entry, now, t.proto, t.tcp_flags)) {
		backend_id = entry->backend_id;
		be = bpf_map_lookup_elem(&mb_lb_be, &backend_id);
		if (be) {
			ct_account(entry, now, t.proto, t.tcp_flags, skb->len, 0);
			goto translate;
		}
	}
	backend_id = lb4_select_backend(&key, svc, &t, now);
	if (backend_id)
		be = bpf_map_lookup_elem(&mb_lb_be, &backend_id);
	if (!be)
		return DROP_NO_SERVICE;
	fresh.backend_id = backend_id;
	fresh.rev_nat_index = revnat;
	ct_account(&fresh, now, t.proto, t.tcp_flags, skb->len, 0);
	bpf_map_update_elem(&mb_ct, &ckey, &fresh, BPF_ANY);

translate:
	be_addr = be->address;
	be_port = be->port;
	*rev_nat_index = revnat;
	return lb4_rewrite(skb, &t, 1, be_addr, be_port);
}

/* After the connection's regular entry was made (client -> backend, CT_EGRESS): remember the
 * translation to undo on its replies. */
static __always_inline void lb4_ct_set_rev_nat(const struct ct_key *key, __u16 rev_nat_index)
{
	struct ct_entry *entry = bpf_map_lookup_elem(&mb_ct, key);

	if (entry)
		entry->rev_nat_index = rev_nat_index;
}

/* A reply on its way into the client pod: give it the frontend as its source again. Returns
 * REASON_FORWARDED or a DROP_*. */
static __always_inline int lb4_rev_nat(struct __sk_buff *skb)
{
	struct lb_revnat_key rkey = {};
	struct ct_entry *entry;
	struct lb_revnat *frontend;
	struct lb4_tuple t;
	struct ct_key key;
	__u32 addr;
	__u16 port;

	if (!lb4_tuple(skb, &t))
		return REASON_FORWARDED;
	lb4_ct_key(&key, t.daddr, t.saddr, t.dport, t.sport, t.proto, CT_EGRESS);
	entry = bpf_map_lookup_elem(&mb_ct, &key);
	if (!entry || !entry->rev_nat_index)
		return REASON_FORWARDED;
	rkey.rev_nat_index = entry->rev_nat_index;
	frontend = bpf_map_lookup_elem(&mb_lb_revnat, &rkey);
	if (!frontend)
		return REASON_FORWARDED;
	addr = frontend->address;
	port = frontend->port;
	lb4_ct_key(&key, t.daddr, addr, t.dport, port, t.proto, CT_SERVICE);
	entry = bpf_map_lookup_elem(&mb_ct, &key);
	if (entry)
		ct_account(entry, ct_now(), t.proto, t.tcp_flags, skb->len, 1);
	return lb4_rewrite(skb, &t, 0, addr, port);
}

/* from_container, after conntrack and policy: a translated packet whose backend is its own
 * source (hairpin) gets IPV4_LOOPBACK as its source, and its connection's CT_EGRESS entry
 * (client -> client) CT_F_HAIRPIN. Returns REASON_FORWARDED or a DROP_*. */
static __always_inline int lb4_hairpin_snat(struct __sk_buff *skb)
{
	struct ct_entry *entry;
	struct lb4_tuple t;
	struct ct_key key;

	if (!lb4_tuple(skb, &t) || t.saddr != t.daddr)
		return REASON_FORWARDED;
	lb4_ct_key(&key, t.saddr, t.daddr, t.sport, t.dport, t.proto, CT_EGRESS);
	entry = bpf_map_lookup_elem(&mb_ct, &key);
	if (entry && !(entry->flags & CT_F_HAIRPIN))
		entry->flags |= CT_F_HAIRPIN;
	return lb4_rewrite(skb, &t, 0, IPV4_LOOPBACK, t.sport);
}

/* to_container, before conntrack: a reply of a hairpin connection (server -> IPV4_LOOPBACK)
 * gets the pod's own address (its source) as destination again, so that conntrack sees a reply
 * of the client's connection. Packets to IPV4_LOOPBACK without such a connection are left alone.
 * Returns REASON_FORWARDED or a DROP_*. */
static __always_inline int lb4_hairpin_reply(struct __sk_buff *skb)
{
	struct ct_entry *entry;
	struct lb4_tuple t;
	struct ct_key key;

	if (!lb4_tuple(skb, &t) || t.daddr != IPV4_LOOPBACK)
		return REASON_FORWARDED;
	lb4_ct_key(&key, t.saddr, t.saddr, t.dport, t.sport, t.proto, CT_EGRESS);
	entry = bpf_map_lookup_elem(&mb_ct, &key);
	if (!entry || !(entry->flags & CT_F_HAIRPIN))
		return REASON_FORWARDED;
	return lb4_rewrite(skb, &t, 1, t.saddr, t.dport);
}

/* ICMP destination unreachable: its header and the offending IPv4 header with 8 bytes of what
 * followed (RFC 792). */
#define LB_REJECT_ORIG_LEN 28
#define LB_REJECT_LEN      (ETH_HLEN + 20 + sizeof(struct lb4_icmp_error))
#define LB_ICMP_DEST_UNREACH 3
#define LB_ICMP_PORT_UNREACH 3

struct lb4_icmp_error {
	__u8  type;
	__u8  code;
	__u16 check;
	__u32 unused;
	__u8  orig[LB_REJECT_ORIG_LEN];
};

/* Turn the packet (from a pod, to a frontend without backends, not yet translated) into an ICMP
 * port unreachable from the frontend to the pod, Ethernet addresses swapped; the caller
 * redirects it back out of the device it came in on. Returns REASON_FORWARDED or a DROP_*
 * (then the packet must be dropped). IPv4 options are not supported (dropped). */
static __always_inline int lb4_reject(struct __sk_buff *skb)
{
	struct lb4_icmp_error icmp = {};
	struct iphdr ip = {};
	struct ethhdr eth;
	__u8 mac[ETH_ALEN];
	struct iphdr *orig;
	__s64 sum;

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0)
		return DROP_INVALID;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, icmp.orig, sizeof(icmp.orig)) < 0)
		return DROP_INVALID;
	orig = (struct iphdr *)icmp.orig;
	if (orig->ihl != 5)
		return DROP_NO_SERVICE;
	icmp.type = LB_ICMP_DEST_UNREACH;
	icmp.code = LB_ICMP_PORT_UNREACH;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&icmp, sizeof(icmp), 0);
	if (sum < 0)
		return DROP_CSUM_L4;
	icmp.check = (__u16)~csum_fold32((__u32)sum);

	ip.version = 4;
	ip.ihl = 5;
	ip.ttl = 64;
	ip.protocol = IPPROTO_ICMP;
	ip.tot_len = bpf_htons(20 + sizeof(icmp));
	ip.saddr = orig->daddr;
	ip.daddr = orig->saddr;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&ip, sizeof(ip), 0);
	if (sum < 0)
		return DROP_CSUM_L3;
	ip.check = (__u16)~csum_fold32((__u32)sum);

	__builtin_memcpy(mac, eth.h_source, ETH_ALEN);
	__builtin_memcpy(eth.h_source, eth.h_dest, ETH_ALEN);
	__builtin_memcpy(eth.h_dest, mac, ETH_ALEN);
	eth.h_proto = bpf_htons(ETH_P_IP);

	if (bpf_skb_change_tail(skb, LB_REJECT_LEN, 0) < 0)
		return DROP_WRITE_ERROR;
	if (bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN, &ip, sizeof(ip), 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN + sizeof(ip), &icmp, sizeof(icmp), 0) < 0)
		return DROP_WRITE_ERROR;
	return REASON_FORWARDED;
}

#endif /* MEMBRANE_LB_H */
