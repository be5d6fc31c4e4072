/* SPDX-License-Identifier: GPL-2.0 */
/* Source NAT in mb_nat for the node device (host.c): BPF masquerade of pod traffic leaving the
 * cluster and NodePort SNAT towards remote backends.
 *
 * A translated connection gets a port of this node's IP from NAT_PORT_MIN..NAT_PORT_MAX (above
 * the kernel's ephemeral range 32768..60999 and the NodePort range, so the node's own sockets
 * do not collide with it): random tries, each claiming the NAT_DIR_IN entry with BPF_NOEXIST,
 * so two connections never share a reply tuple. TCP, UDP and ICMP echo (the identifier plays
 * the port) are translated; other protocols are left alone.
 * Not handled: IP fragments, ICMP errors about translated connections, port reuse before the
 * LRU evicts an entry.
 */
#ifndef MEMBRANE_NAT_H
#define MEMBRANE_NAT_H

#include <linux/icmp.h>
#include <linux/in.h>
#include <linux/ip.h>

#include "common.h"
#include "conntrack.h"
#include "drop.h"
#include "ipv4.h"
#include "lb.h"
#include "maps.h"

#define DROP_NAT_NO_MAPPING 167 /* "No mapping for NAT masquerade" */
#define DROP_FIB_LOOKUP     169 /* "FIB lookup failed" */

#define NAT_PORT_MIN   61000
#define NAT_PORT_MAX   65535
#define NAT_ALLOC_TRIES 32
#define NAT_ICMP_CSUM  2 /* offset of the checksum in the ICMP header */
#define NAT_ICMP_ID    4 /* ... of the echo identifier */

/* The packet's tuple when SNAT applies to it: TCP, UDP or ICMP echo (request or reply), not a
 * non-first fragment. Uses lb4_tuple's layout; for ICMP echo sport = dport = identifier. */
static __always_inline int nat4_tuple(struct __sk_buff *skb, struct lb4_tuple *t)
{
	struct iphdr *ip4 = ipv4_header(skb);
	__u8 icmp[8];
	__u32 off;

	if (!ip4)
		return 0;
	if (ip4->protocol != IPPROTO_ICMP)
		return lb4_tuple(skb, t);
	if (ip4->frag_off & bpf_htons(IP_OFFSET_MASK))
		return 0;
	off = ETH_HLEN + ip4->ihl * 4;
	t->saddr = ip4->saddr;
	t->daddr = ip4->daddr;
	t->proto = IPPROTO_ICMP;
	t->tcp_flags = 0;
	t->l4_off = off;
	if (bpf_skb_load_bytes(skb, off, icmp, sizeof(icmp)) < 0)
		return 0;
	if (icmp[0] != ICMP_ECHO && icmp[0] != ICMP_ECHOREPLY)
		return 0;
	__builtin_memcpy(&t->sport, &icmp[NAT_ICMP_ID], 2);
	t->dport = t->sport;
	return 1;
}

static __always_inline void nat4_key(struct nat_key *key, __u32 saddr, __u32 daddr, __u16 sport, __u16 dport,
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

/* Replace the source (dst = 0) or destination address and port of the packet described by t,
 * keeping every checksum right; ICMP echo: the identifier is the port. Updates t. Returns
 * REASON_FORWARDED or a DROP_*; invalidates packet pointers. */
static __always_inline int nat4_rewrite(struct __sk_buff *skb, struct lb4_tuple *t, int dst, __u32 new_addr,
					__u16 new_port)
{
	__u32 old_addr = dst ? t->daddr : t->saddr;
	__u16 old_port = dst ? t->dport : t->sport;
	int ret;

	if (t->proto != IPPROTO_ICMP) {
		ret = lb4_rewrite(skb, t, dst, new_addr, new_port);
		if (ret != REASON_FORWARDED)
			return ret;
	} else {
		if (old_addr != new_addr) {
			if (bpf_l3_csum_replace(skb, LB_IP_CSUM_OFF, old_addr, new_addr, 4) < 0)
				return DROP_CSUM_L3;
			if (bpf_skb_store_bytes(skb, dst ? LB_IP_DADDR_OFF : LB_IP_SADDR_OFF, &new_addr, 4, 0) < 0)
				return DROP_WRITE_ERROR;
		}
		if (old_port != new_port) {
			if (bpf_l4_csum_replace(skb, t->l4_off + NAT_ICMP_CSUM, old_port, new_port, 2) < 0)
				return DROP_CSUM_L4;
			if (bpf_skb_store_bytes(skb, t->l4_off + NAT_ICMP_ID, &new_port, 2, 0) < 0)
				return DROP_WRITE_ERROR;
		}
		t->sport = new_port;
		t->dport = new_port;
	}
	if (dst) {
		t->daddr = new_addr;
		t->dport = new_port;
	} else {
		t->saddr = new_addr;
		if (t->proto != IPPROTO_ICMP)
			t->sport = new_port;
	}
	return REASON_FORWARDED;
}

/* SNAT an outgoing packet (tuple t, before translation) to node_ip: reuse the connection's
 * NAT_DIR_OUT entry or allocate a port and create both entries. `in` is the NAT_DIR_IN value to
 * record (its addr/port are filled here with t's source; the caller sets rev_* and flags).
 * Returns REASON_FORWARDED or a DROP_*. */
static __always_inline int nat4_snat(struct __sk_buff *skb, struct lb4_tuple *t, __u32 node_ip, struct nat_entry *in)
{
	struct nat_entry *out, fresh = {};
	struct nat_key okey, ikey;
	__u16 port = 0;
	__u32 i;

	nat4_key(&okey, t->saddr, t->daddr, t->sport, t->dport, t->proto, NAT_DIR_OUT);
	out = bpf_map_lookup_elem(&mb_nat, &okey);
	if (out && out->addr == node_ip) {
		port = out->port;
		/* The reply entry may have been evicted alone: put it back. */
		nat4_key(&ikey, t->daddr, node_ip, t->proto == IPPROTO_ICMP ? port : t->dport, port, t->proto,
			 NAT_DIR_IN);
		if (!bpf_map_lookup_elem(&mb_nat, &ikey)) {
			in->addr = t->saddr;
			in->port = t->sport;
			in->created = ct_now();
			bpf_map_update_elem(&mb_nat, &ikey, in, BPF_ANY);
		}
		return nat4_rewrite(skb, t, 0, node_ip, port);
	}
	in->addr = t->saddr;
	in->port = t->sport;
	in->created = ct_now();
	for (i = 0; i < NAT_ALLOC_TRIES; i++) {
		port = bpf_htons((__u16)(NAT_PORT_MIN + bpf_get_prandom_u32() % (NAT_PORT_MAX - NAT_PORT_MIN + 1)));
		nat4_key(&ikey, t->daddr, node_ip, t->proto == IPPROTO_ICMP ? port : t->dport, port, t->proto,
			 NAT_DIR_IN);
		if (bpf_map_update_elem(&mb_nat, &ikey, in, BPF_NOEXIST) == 0)
			break;
		port = 0;
	}
	if (!port)
		return DROP_NAT_NO_MAPPING;
	fresh.addr = node_ip;
	fresh.port = port;
	fresh.flags = in->flags;
	fresh.created = in->created;
	if (bpf_map_update_elem(&mb_nat, &okey, &fresh, BPF_ANY) < 0) {
		bpf_map_delete_elem(&mb_nat, &ikey);
		return DROP_NAT_NO_MAPPING;
	}
	return nat4_rewrite(skb, t, 0, node_ip, port);
}

#endif /* MEMBRANE_NAT_H */
