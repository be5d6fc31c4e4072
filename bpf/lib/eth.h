/* SPDX-License-Identifier: GPL-2.0 */
/* Ethernet header helpers. */
#ifndef MEMBRANE_ETH_H
#define MEMBRANE_ETH_H

#include "common.h"

/* Set source and destination MAC of a frame whose Ethernet header was bounds-checked. */
static __always_inline void eth_set_macs(struct ethhdr *eth, const __u8 *src, const __u8 *dst)
{
	__builtin_memcpy(eth->h_source, src, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, dst, ETH_ALEN);
}

/* Are the two MAC addresses the same? (No memcmp in BPF: six byte compares, unrolled.) */
static __always_inline int eth_addr_equal(const __u8 *a, const __u8 *b)
{
	__u8 diff = 0;

#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

#endif /* MEMBRANE_ETH_H */
