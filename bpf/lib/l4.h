/* SPDX-License-Identifier: GPL-2.0 */
/* The L4 facts conntrack and policy need: ports (or ICMP echo id / type) and TCP flags; for an
 * ICMP error (destination unreachable, incl. fragmentation needed; time exceeded; parameter
 * problem) the tuple of the packet it is about, which it carries after its own 8 bytes. */
#ifndef MEMBRANE_L4_H
#define MEMBRANE_L4_H

#include <linux/icmp.h>
#include <linux/in.h>
#include <linux/ip.h>

#include "common.h"
#include "drop.h"

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

#define IP_OFFSET_MASK 0x1fff

struct l4_info {
	__u16 sport;       /* network order; ICMP echo: the identifier */
	__u16 dport;       /* network order; ICMP echo: the identifier */
	__u16 policy_port; /* host order: the destination port, or the ICMP type */
	__u8  tcp_flags;   /* TCP only */
	__u8  trackable;   /* 0 for ICMP other than echo: checked by policy, never tracked */
	__u8  related;     /* an ICMP error whose embedded tuple below was read */
	__u8  inner_protocol;
	__be32 inner_saddr; /* the embedded packet's addresses and ports (network order), as it was sent */
	__be32 inner_daddr;
	__u16 inner_sport;
	__u16 inner_dport;
};

static __always_inline int icmp_is_error(__u8 type)
{
	return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED || type == ICMP_PARAMETERPROB;
}

/* Read the packet an ICMP error at `off` (its header) quotes: its IPv4 header, then its ports (or
 * echo identifier). Leaves l4->related 0 when the quote is cut short or of another protocol. */
static __always_inline void l4_extract_related(struct __sk_buff *skb, __u32 off, struct l4_info *l4)
{
	struct iphdr inner;
	__u8 buf[8];

	if (bpf_skb_load_bytes(skb, off + 8, &inner, sizeof(inner)) < 0 || inner.ihl < 5)
		return;
	if (bpf_skb_load_bytes(skb, off + 8 + inner.ihl * 4, buf, 8) < 0)
		return;
	switch (inner.protocol) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		__builtin_memcpy(&l4->inner_sport, &buf[0], 2);
		__builtin_memcpy(&l4->inner_dport, &buf[2], 2);
		break;
	case IPPROTO_ICMP:
		if (buf[0] != ICMP_ECHO)
			return;
		__builtin_memcpy(&l4->inner_sport, &buf[4], 2);
		l4->inner_dport = l4->inner_sport;
		break;
	default:
		return;
	}
	l4->inner_protocol = inner.protocol;
	l4->inner_saddr = inner.saddr;
	l4->inner_daddr = inner.daddr;
	l4->related = 1;
}

/* Fill `l4` from the packet; returns 0 or DROP_CT_INVALID_HDR when the L4 header is cut
 * short. Non-first fragments carry no L4 header: they are seen with ports 0. */
static __always_inline int l4_extract(struct __sk_buff *skb, const struct iphdr *ip4, struct l4_info *l4)
{
	__u32 off = sizeof(struct ethhdr) + ip4->ihl * 4;
	__u8 buf[14];

	__builtin_memset(l4, 0, sizeof(*l4));
	l4->trackable = 1;
	if (ip4->frag_off & bpf_htons(IP_OFFSET_MASK))
		return 0;
	switch (ip4->protocol) {
	case IPPROTO_TCP:
		if (bpf_skb_load_bytes(skb, off, buf, 14) < 0)
			return DROP_CT_INVALID_HDR;
		l4->tcp_flags = buf[13];
		break;
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		if (bpf_skb_load_bytes(skb, off, buf, 4) < 0)
			return DROP_CT_INVALID_HDR;
		break;
	case IPPROTO_ICMP:
		if (bpf_skb_load_bytes(skb, off, buf, 8) < 0)
			return DROP_CT_INVALID_HDR;
		l4->policy_port = buf[0]; /* type */
		if (buf[0] == ICMP_ECHO || buf[0] == ICMP_ECHOREPLY) {
			__builtin_memcpy(&l4->sport, &buf[4], 2);
			l4->dport = l4->sport;
		} else {
			l4->trackable = 0;
			if (icmp_is_error(buf[0]))
				l4_extract_related(skb, off, l4);
		}
		return 0;
	default:
		return 0;
	}
	__builtin_memcpy(&l4->sport, &buf[0], 2);
	__builtin_memcpy(&l4->dport, &buf[2], 2);
	l4->policy_port = bpf_ntohs(l4->dport);
	return 0;
}

#endif /* MEMBRANE_L4_H */
