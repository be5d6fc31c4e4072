/* SPDX-License-Identifier: GPL-2.0 */
/* Monitor aggregation: which trace events the datapath writes, as Cilium's bpf.monitorAggregation
 * (levels numbered as Cilium numbers them), bpf.monitorInterval and bpf.monitorFlags decide:
 *
 *   none (0)          every packet, at every observation point;
 *   lowest (1), low (2)  no trace where a packet is received (from-endpoint, from-proxy, from-host,
 *                     from-stack, from-overlay, from-network): at most one trace per packet and node;
 *   medium (3, the default), maximum (4)
 *                     to-* traces too only for packets conntrack reports: a connection's first
 *                     packet in each direction, a TCP flag of the report flags seen for the first
 *                     time in its direction, or the first packet once the interval has passed since
 *                     the direction's last report. A point without conntrack reports nothing.
 *
 * Drops and policy verdicts are written at every level. The settings are in mb_config (maps.h),
 * written by the agent; the all-zero entry (a fresh map) is medium, 5 s, all TCP flags.
 *
 * trace_wanted is a global BPF function with scalar arguments: the verifier checks it once, on its
 * own, instead of on every path of from_container and the other programs that inline emit_trace.
 * ct_report_due is inlined: conntrack runs inside global functions already (host_fw_pod_to_host),
 * and one more call level there would pass the 512-byte stack the verifier allows a chain of calls
 * (each level costs at least 32 bytes).
 */
#ifndef MEMBRANE_MONITOR_AGGREGATION_H
#define MEMBRANE_MONITOR_AGGREGATION_H

#include "common.h"
#include "maps.h"

#define MONITOR_AGG_NONE    0
#define MONITOR_AGG_LOWEST  1 /* TRACE_AGGREGATE_RX in Cilium's trace.h */
#define MONITOR_AGG_LOW     2
#define MONITOR_AGG_MEDIUM  3 /* TRACE_AGGREGATE_ACTIVE_CT */
#define MONITOR_AGG_MAXIMUM 4

#define MONITOR_DEFAULT_INTERVAL 5    /* seconds */
#define MONITOR_DEFAULT_FLAGS    0xff /* every TCP flag */

/* The level of a config entry (datapath_config.aggregation holds the level + 1; 0 = medium). */
static __always_inline __u32 monitor_level(const struct datapath_config *config)
{
	if (!config || config->aggregation == 0 || config->aggregation > MONITOR_AGG_MAXIMUM + 1)
		return MONITOR_AGG_MEDIUM;
	return config->aggregation - 1;
}

static __always_inline int trace_point_receives(__u32 point)
{
	return point >= TRACE_FROM_LXC && point <= TRACE_FROM_NETWORK;
}

/* Write a trace at `point` (TRACE_*)? `report`: conntrack reported the packet (ct_report_due). */
__attribute__((noinline)) int trace_wanted(__u32 point, __u32 report)
{
	__u32 key = 0;
	struct datapath_config *config = bpf_map_lookup_elem(&mb_config, &key);
	__u32 level = monitor_level(config);

	if (config && (config->flags & CONFIG_F_EVENTS_DISABLED))
		return 0;
	if (level >= MONITOR_AGG_LOWEST && trace_point_receives(point))
		return 0;
	return level < MONITOR_AGG_MEDIUM || report;
}

/* Does conntrack report this packet of a connection's direction? `last`: ct_now() of the
 * direction's last report (0: none yet), `seen`: the TCP flags its packets carried so far. Below
 * medium every packet is reported (its traces are not aggregated). */
static __always_inline int ct_report_due(__u32 last, __u32 seen, __u32 tcp_flags, __u32 now)
{
	__u32 key = 0;
	struct datapath_config *config = bpf_map_lookup_elem(&mb_config, &key);
	__u32 interval = MONITOR_DEFAULT_INTERVAL;
	__u32 mask = MONITOR_DEFAULT_FLAGS;

	if (monitor_level(config) < MONITOR_AGG_MEDIUM)
		return 1;
	if (config && config->report_interval)
		interval = config->report_interval;
	if (config && config->report_flags)
		mask = config->report_flags;
	return (tcp_flags & mask & ~seen) || last == 0 || last + interval <= now;
}

#endif /* MEMBRANE_MONITOR_AGGREGATION_H */
