/* SPDX-License-Identifier: GPL-2.0 */
/* Security identity of an IPv4 address: longest-prefix match in mb_ipcache. */
#ifndef MEMBRANE_IPCACHE_H
#define MEMBRANE_IPCACHE_H

#include "maps.h"

/* Reserved identities (Cilium's numbers). */
#define IDENTITY_UNKNOWN 0
#define IDENTITY_HOST    1
#define IDENTITY_WORLD   2

/* Identity of ip4 (network order); world when no prefix covers it. */
static __always_inline __u32 ipcache_identity(__u32 ip4)
{
	struct ipcache_key key = { .prefixlen = 32, .ip4 = ip4 };
	struct ipcache_value *value;

	value = bpf_map_lookup_elem(&mb_ipcache, &key);
	return value ? value->sec_identity : IDENTITY_WORLD;
}

/* Is ip4 a node's address (host, remote-node, or flagged with a CIDR identity of its own)? */
static __always_inline int ipcache_is_node(__u32 ip4)
{
	struct ipcache_key key = { .prefixlen = 32, .ip4 = ip4 };
	struct ipcache_value *value;

	value = bpf_map_lookup_elem(&mb_ipcache, &key);
	if (!value)
		return 0;
	return value->sec_identity == IDENTITY_HOST || value->sec_identity == 6 || (value->flags & IPCACHE_F_NODE);
}

#endif /* MEMBRANE_IPCACHE_H */
