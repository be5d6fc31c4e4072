/* SPDX-License-Identifier: GPL-2.0 */
/* Connection tracking in mb_ct: policy is checked on a connection's first packet only; later
 * packets of either direction, and replies, pass on the entry.
 *
 * Lifetimes (seconds): 60 until a TCP connection has seen a reply, then 21600; 60 for other
 * protocols; 10 once a TCP connection has seen FIN both ways or a RST. A TCP SYN (without ACK)
 * that meets a closing entry starts a new connection, which is checked by policy again.
 *
 * Monitor aggregation (monitor_aggregation.h, at Cilium's default `medium`): a lookup also says
 * whether the packet is worth an event: the first packet of each direction, a TCP flag of the
 * report flags (default all) not yet seen in its direction (so SYN, SYN-ACK, the handshake ACK,
 * the first data (PSH), FIN and RST), and otherwise at most one packet per direction every report
 * interval (default 5 s). Below medium every packet is.
 *
 * Related ICMP errors: an error about a tracked connection's packet (l4.h reads the tuple it
 * quotes) is CT_RELATED and passes without policy, as in Cilium; it neither creates nor refreshes
 * an entry. The quoted packet travelled the other way, so its tuple is keyed reversed: the lookup
 * then finds the connection in either direction like any packet of it.
 */
#ifndef MEMBRANE_CONNTRACK_H
#define MEMBRANE_CONNTRACK_H

#include <linux/in.h>
#include <linux/ip.h>

#include "l4.h"
#include "maps.h"
#include "monitor_aggregation.h"

#define CT_SYN_TIMEOUT   60
#define CT_TCP_LIFETIME  21600
#define CT_ANY_LIFETIME  60
#define CT_CLOSE_TIMEOUT 10
#define NSEC_PER_SEC     1000000000ULL

#define CT_F_CLOSING (CT_F_TX_CLOSING | CT_F_RX_CLOSING)

enum ct_status {
	CT_NEW,         /* no live entry: check policy, then ct_create() */
	CT_ESTABLISHED, /* same direction as the connection's first packet */
	CT_REPLY,       /* the other direction */
	CT_RELATED,     /* an ICMP error about a packet of a live connection */
};

static __always_inline __u32 ct_now(void)
{
	return (__u32)(bpf_ktime_get_ns() / NSEC_PER_SEC);
}

static __always_inline void ct_key_init(struct ct_key *key, const struct iphdr *ip4, const struct l4_info *l4,
					__u8 direction)
{
	__builtin_memset(key, 0, sizeof(*key));
	if (l4->related) { /* the quoted packet, as if it came back: the error's own direction */
		key->saddr = l4->inner_daddr;
		key->daddr = l4->inner_saddr;
		key->sport = l4->inner_dport;
		key->dport = l4->inner_sport;
		key->protocol = l4->inner_protocol;
		key->direction = direction;
		return;
	}
	key->saddr = ip4->saddr;
	key->daddr = ip4->daddr;
	key->sport = l4->sport;
	key->dport = l4->dport;
	key->protocol = ip4->protocol;
	key->direction = direction;
}

static __always_inline int ct_is_syn(__u8 protocol, __u8 tcp_flags)
{
	return protocol == IPPROTO_TCP && (tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
}

/* Is the entry usable for this packet? */
static __always_inline int ct_live(const struct ct_entry *entry, __u32 now, __u8 protocol, __u8 tcp_flags)
{
	if (entry->lifetime <= now)
		return 0;
	if ((entry->flags & (CT_F_CLOSING)) && ct_is_syn(protocol, tcp_flags))
		return 0;
	return 1;
}

/* Account a packet on a live entry and move its lifetime; returns 1 if the packet should be
 * reported (monitor aggregation above), else 0. */
static __always_inline int ct_account(struct ct_entry *entry, __u32 now, __u8 protocol, __u8 tcp_flags, __u32 bytes,
				      int reply)
{
	__u32 *last_report = reply ? &entry->rx_last_report : &entry->tx_last_report;
	__u8 seen = reply ? entry->rx_flags_seen : entry->tx_flags_seen;
	__u16 flags = entry->flags;
	__u32 lifetime;
	int report = 0;

	if (ct_report_due(*last_report, seen, tcp_flags, now)) {
		*last_report = now;
		report = 1;
	}
	if (reply) {
		__sync_fetch_and_add(&entry->rx_packets, 1);
		__sync_fetch_and_add(&entry->rx_bytes, bytes);
		entry->rx_flags_seen |= tcp_flags;
		flags |= CT_F_SEEN_REPLY;
	} else {
		__sync_fetch_and_add(&entry->tx_packets, 1);
		__sync_fetch_and_add(&entry->tx_bytes, bytes);
		entry->tx_flags_seen |= tcp_flags;
	}
	if (protocol != IPPROTO_TCP) {
		lifetime = now + CT_ANY_LIFETIME;
	} else {
		if (tcp_flags & TCP_FLAG_RST)
			flags |= CT_F_CLOSING;
		else if (tcp_flags & TCP_FLAG_FIN)
			flags |= reply ? CT_F_RX_CLOSING : CT_F_TX_CLOSING;
		if ((flags & CT_F_CLOSING) == CT_F_CLOSING)
			lifetime = now + CT_CLOSE_TIMEOUT;
		else if (flags & CT_F_SEEN_REPLY)
			lifetime = now + CT_TCP_LIFETIME;
		else
			lifetime = now + CT_SYN_TIMEOUT;
		/* A closed connection never gets its long lifetime back. */
		if ((flags & CT_F_CLOSING) == CT_F_CLOSING && entry->lifetime < lifetime &&
		    (entry->flags & CT_F_CLOSING) == CT_F_CLOSING)
			lifetime = entry->lifetime;
	}
	entry->flags = flags;
	entry->lifetime = lifetime;
	return report;
}

/* An entry's L7 redirect as ct_lookup reports it: the proxy port, with CT_PROXY_UPSTREAM when the
 * connection is a proxy's own upstream connection (proxy.h). */
#define CT_PROXY_UPSTREAM (1U << 16)

static __always_inline __u32 ct_proxy(const struct ct_entry *entry)
{
	return entry->proxy_port | ((entry->flags & CT_F_PROXY_UPSTREAM) ? CT_PROXY_UPSTREAM : 0);
}

/* Look the packet up as part of a connection first seen at this hook (`key`, built with
 * ct_key_init for this hook's direction) or as a reply to one first seen at the other hook.
 * Sets *report for a live entry (see monitor aggregation above). `related`: the key is an ICMP
 * error's quoted tuple (ct_key_init), which only looks for a live entry in either direction
 * (CT_RELATED, always reported) and accounts nothing on it. */
static __always_inline enum ct_status ct_lookup(const struct ct_key *key, __u8 tcp_flags, __u32 bytes, int *report,
						int related, __u32 *proxy)
{
	struct ct_key reverse = {};
	struct ct_entry *entry;
	__u32 now = ct_now();

	entry = bpf_map_lookup_elem(&mb_ct, key);
	if (related && entry && entry->lifetime > now)
		goto related;
	if (!related && entry && ct_live(entry, now, key->protocol, tcp_flags)) {
		*report = ct_account(entry, now, key->protocol, tcp_flags, bytes, 0);
		*proxy = ct_proxy(entry);
		return CT_ESTABLISHED;
	}
	reverse.saddr = key->daddr;
	reverse.daddr = key->saddr;
	reverse.sport = key->dport;
	reverse.dport = key->sport;
	reverse.protocol = key->protocol;
	reverse.direction = key->direction == CT_EGRESS ? CT_INGRESS : CT_EGRESS;
	entry = bpf_map_lookup_elem(&mb_ct, &reverse);
	if (related && entry && entry->lifetime > now)
		goto related;
	if (!related && entry && ct_live(entry, now, key->protocol, tcp_flags)) {
		*report = ct_account(entry, now, key->protocol, tcp_flags, bytes, 1);
		*proxy = ct_proxy(entry);
		return CT_REPLY;
	}
	return CT_NEW;
related:
	*report = 1;
	return CT_RELATED;
}

/* Record a new connection whose first packet policy allowed (replacing a stale entry). An
 * insert that fails (it cannot for an LRU map short of memory) leaves the packet allowed. */
static __always_inline void ct_create(const struct ct_key *key, __u8 tcp_flags, __u32 bytes, __u32 src_identity,
				      __u32 proxy)
{
	struct ct_entry entry = {};
	__u32 now = ct_now();

	entry.src_identity = src_identity;
	entry.proxy_port = (__u16)proxy;
	if (proxy & CT_PROXY_UPSTREAM)
		entry.flags = CT_F_PROXY_UPSTREAM;
	entry.lifetime = 0;
	ct_account(&entry, now, key->protocol, tcp_flags, bytes, 0);
	bpf_map_update_elem(&mb_ct, key, &entry, BPF_ANY);
}

#endif /* MEMBRANE_CONNTRACK_H */
