/* SPDX-License-Identifier: GPL-2.0 */
/* Local endpoint lookups: by IPv4 address (mb_endpoints) and by pod veth (mb_lxc). */
#ifndef MEMBRANE_ENDPOINTS_H
#define MEMBRANE_ENDPOINTS_H

#include "maps.h"

static __always_inline struct endpoint_info *lookup_ip4_endpoint(__u32 ip4)
{
	struct endpoint_key key = { .ip4 = ip4 };

	return bpf_map_lookup_elem(&mb_endpoints, &key);
}

/* The endpoint bound to the pod veth `ifindex` and its address (into *ip4), or NULL when the
 * device is no (longer a) known endpoint. */
static __always_inline struct endpoint_info *lookup_lxc_endpoint(__u32 ifindex, __u32 *ip4)
{
	struct lxc_key key = { .ifindex = ifindex };
	struct lxc_info *lxc = bpf_map_lookup_elem(&mb_lxc, &key);

	if (!lxc)
		return NULL;
	*ip4 = lxc->ip4;
	return lookup_ip4_endpoint(lxc->ip4);
}

#endif /* MEMBRANE_ENDPOINTS_H */
