/* SPDX-License-Identifier: GPL-2.0 */
/* Per-CPU packet/byte counters by (reason, direction), like Cilium's metrics map. */
#ifndef MEMBRANE_METRICS_H
#define MEMBRANE_METRICS_H

#include "drop.h"
#include "maps.h"

static __always_inline void update_metrics(__u64 bytes, __u8 dir, __u8 reason)
{
	struct metrics_key key = { .reason = reason, .dir = dir };
	struct metrics_value *entry;

	entry = bpf_map_lookup_elem(&mb_metrics, &key);
	if (entry) {
		/* Per-CPU value and BPF programs do not migrate: a plain add is enough. */
		entry->packets += 1;
		entry->bytes += bytes;
		return;
	}
	struct metrics_value fresh = { .packets = 1, .bytes = bytes };
	/* First packet of this kind: create the key (zeroed on the other CPUs). If a program on
	 * another CPU created it in the meantime, look it up again and add to our slot. */
	if (bpf_map_update_elem(&mb_metrics, &key, &fresh, BPF_NOEXIST) == 0)
		return;
	entry = bpf_map_lookup_elem(&mb_metrics, &key);
	if (entry) {
		entry->packets += 1;
		entry->bytes += bytes;
	}
}

/* Count a drop and return the verdict that drops the packet. */
static __always_inline int drop_packet(const struct __sk_buff *skb, __u8 dir, __u8 reason)
{
	update_metrics(skb->len, dir, reason);
	return CTX_ACT_DROP;
}

#endif /* MEMBRANE_METRICS_H */
