/* SPDX-License-Identifier: GPL-2.0 */
/* Local endpoint lookups in mb_endpoints. */
#ifndef MEMBRANE_ENDPOINTS_H
#define MEMBRANE_ENDPOINTS_H

#include "maps.h"

static __always_inline struct endpoint_info *lookup_ip4_endpoint(__u32 ip4)
{
	struct endpoint_key key = { .ip4 = ip4 };

	return bpf_map_lookup_elem(&mb_endpoints, &key);
}

#endif /* MEMBRANE_ENDPOINTS_H */
