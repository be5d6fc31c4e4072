/* SPDX-License-Identifier: GPL-2.0 */
/* IPv4 header validation and forwarding helpers. */
#ifndef MEMBRANE_IPV4_H
#define MEMBRANE_IPV4_H

#include <linux/ip.h>

#include "common.h"

/* The IPv4 header after the Ethernet header, or NULL if the packet is truncated or malformed. */
static __always_inline struct iphdr *ipv4_header(struct __sk_buff *skb)
{
	void *data = ctx_data(skb), *data_end = ctx_data_end(skb);
	struct iphdr *ip4 = data + sizeof(struct ethhdr);

	if (!PKT_HAS(ip4, sizeof(*ip4), data_end))
		return NULL;
	if (ip4->version != 4 || ip4->ihl < 5)
		return NULL;
	/* tot_len 0 is legal for BIG TCP GSO packets; otherwise it must cover the header. */
	if (ip4->tot_len && bpf_ntohs(ip4->tot_len) < (__u16)(ip4->ihl * 4))
		return NULL;
	return ip4;
}

/* Fold a 32-bit one's complement sum into 16 bits. */
static __always_inline __u16 csum_fold32(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* RFC 1624 incremental update: a 16-bit word of the header changed from `from` to `to`.
 * One's complement arithmetic is byte-order independent, so words stay in network order. */
static __always_inline void csum_replace2(__sum16 *check, __u16 from, __u16 to)
{
	__u32 sum = (__u16)~*check;

	sum += (__u16)~from;
	sum += to;
	*check = (__sum16)~csum_fold32(sum);
}

/* Decrement the TTL, updating the header checksum. The caller has checked ttl > 1. */
static __always_inline void ipv4_dec_ttl(struct iphdr *ip4)
{
	/* TTL shares a 16-bit word with the protocol field. */
	__u16 *word = (__u16 *)&ip4->ttl;
	__u16 from = *word;

	ip4->ttl--;
	csum_replace2(&ip4->check, from, *word);
}

/* Is addr (network order) inside net/prefix? Prefix 0 covers everything. */
static __always_inline int ipv4_in_prefix(__u32 addr, __u32 net, __u8 prefix)
{
	__u32 mask;

	if (prefix == 0)
		return 1;
	if (prefix > 32)
		return 0;
	mask = bpf_htonl(~0U << (32 - prefix));
	return (addr & mask) == (net & mask);
}

#endif /* MEMBRANE_IPV4_H */
