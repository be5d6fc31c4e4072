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
 *                     to-network only for a packet the host firewall's conntrack reports at
 *                     to_netdev (MONITOR_REPORT_HOST_FW): Cilium's cil_to_netdev sends its
 *                     TRACE_TO_NETWORK with a monitor value that only its host-firewall lookup sets,
 *                     and bpf_lxc sends none for a packet it redirects to the device, so a pod's
 *                     packet leaving the node is not traced there at all.
 *
 * Drops and policy verdicts are written at every level. The settings are in mb_config (maps.h),
 * written by the agent; the all-zero entry (a fresh map) is medium, 5 s, all TCP flags.
 *
 * Both are inlined, not global BPF functions: from_netdev and the global functions conntrack runs in
 * (host_fw_pod_to_host) are close to the 512 bytes of stack the verifier allows a chain of calls,
 * and each call level costs a frame.
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

/* Key 0 of a one-entry array (mb_config, mb_event_stats, ...), in .rodata: a lookup with it takes
 * no stack of the nearly full frames of from_netdev and netdev_trace, and none at all in the two
 * global functions below (a global function without stack adds nothing to a chain's 512 bytes). */
static const __u32 array_key0 = 0;

#define MONITOR_DEFAULT_INTERVAL 5    /* seconds */
#define MONITOR_DEFAULT_FLAGS    0xff /* every TCP flag */

/* The level of a config entry (datapath_config.aggregation holds the level + 1; 0 = medium). */
static __always_inline __u32 monitor_level(const struct datapath_config *config)
{
	if (!config || config->aggregation == 0 || config->aggregation > MONITOR_AGG_MAXIMUM + 1)
		return MONITOR_AGG_MEDIUM;
	return config->aggregation - 1;
}

/* A trace's `report` when to_netdev's host firewall conntrack reported the packet (ct_lookup): the
 * only report a to-network trace is written with from medium on. */
#define MONITOR_REPORT_HOST_FW 2

static __always_inline int trace_point_receives(__u32 point)
{
	return point >= TRACE_FROM_LXC && point <= TRACE_FROM_NETWORK;
}

/* Write a trace at `point` (TRACE_*) under `config` (mb_config's entry, NULL: defaults)? `report`:
 * conntrack reported the packet (ct_report_due). */
static __always_inline int trace_wanted_by(const struct datapath_config *config, __u32 point, __u32 report)
{
	__u32 level = monitor_level(config);

	if (config && (config->flags & CONFIG_F_EVENTS_DISABLED))
		return 0;
	if (level >= MONITOR_AGG_LOWEST && trace_point_receives(point))
		return 0;
	if (level < MONITOR_AGG_MEDIUM)
		return 1;
	if (point == TRACE_TO_NETWORK)
		return report == MONITOR_REPORT_HOST_FW;
	return report != 0;
}

__attribute__((noinline)) int trace_wanted(__u32 point, __u32 report)
{
	return trace_wanted_by(bpf_map_lookup_elem(&mb_config, &array_key0), point, report);
}

/* Does conntrack report this packet of a connection's direction, under `config` (NULL: defaults)?
 * `last`: ct_now() of the direction's last report (0: none yet), `seen`: the TCP flags its packets
 * carried so far. Below medium every packet is reported (its traces are not aggregated). */
static __always_inline int ct_report_due_by(const struct datapath_config *config, __u32 last, __u32 seen,
					    __u32 tcp_flags, __u32 now)
{
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

__attribute__((noinline)) int ct_report_due(__u32 last, __u32 seen, __u32 tcp_flags, __u32 now)
{
	return ct_report_due_by(bpf_map_lookup_elem(&mb_config, &array_key0), last, seen, tcp_flags, now);
}

#endif /* MEMBRANE_MONITOR_AGGREGATION_H */
