/* SPDX-License-Identifier: GPL-2.0 */
/* ip-masq-agent: destinations whose packets keep the pod's source address (mb_ipmasq_v4). */
#ifndef MEMBRANE_IPMASQ_H
#define MEMBRANE_IPMASQ_H

#include "maps.h"

/* Whether a non-masquerade CIDR covers ip4 (network order). */
static __always_inline int ipmasq_exempt(__u32 ip4)
{
	struct ipmasq_key key = { .prefixlen = 32, .ip4 = ip4 };

	return bpf_map_lookup_elem(&mb_ipmasq_v4, &key) != NULL;
}

#endif /* MEMBRANE_IPMASQ_H */
