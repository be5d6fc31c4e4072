/* SPDX-License-Identifier: GPL-2.0 */
/* Trace, drop and policy-verdict records in the mb_events ring buffer, for Hubble.
 *
 * Each record is a struct event_record (maps.h): a header that says what happened where, then
 * the packet's first EVENT_CAPTURE_LEN bytes. Traces follow monitor aggregation (`report`, set
 * from conntrack.h); drops and policy verdicts are always written. Nothing is written while
 * mb_config has CONFIG_F_EVENTS_DISABLED. A full ring buffer loses the record, counted in
 * mb_event_stats.
 *
 * Which traces are written is monitor aggregation's call (monitor_aggregation.h, trace_wanted):
 * at Cilium's default level (`medium`) a packet a pod sends is not traced where it enters
 * (from-endpoint) but where it is handed on (to-endpoint, to-stack, to-overlay, to-proxy), and only
 * if conntrack reports it; at `none` every packet at every point.
 */
#ifndef MEMBRANE_EVENTS_H
#define MEMBRANE_EVENTS_H

#include "common.h"
#include "drop.h"
#include "maps.h"
#include "metrics.h"
#include "monitor_aggregation.h"

/* What the events of one packet say, filled in as the packet is processed. */
struct event_ctx {
	__u32 src_identity;
	__u32 dst_identity;
	__u16 ep_id;        /* the endpoint on our side of the hook, 0 if unknown */
	__u16 dport;        /* host order: destination port or ICMP type */
	__u8  direction;    /* METRIC_INGRESS or METRIC_EGRESS */
	__u8  trace_reason; /* TRACE_REASON_* */
	__u8  report;       /* write trace events for this packet */
	__u8  protocol;     /* IP protocol, 0 if not IPv4 */
	__u32 tunnel_identity; /* from the overlay: the sender's identity (VNI); 0: ask the ipcache */
	__u16 proxy_port;   /* L7 redirect of this packet's connection (host order), 0 = none (proxy.h) */
};

static __always_inline void event_ctx_init(struct event_ctx *ctx, __u8 direction)
{
	__builtin_memset(ctx, 0, sizeof(*ctx));
	ctx->direction = direction;
	ctx->trace_reason = TRACE_REASON_UNKNOWN;
}

/* Are records written at all? (Which traces: trace_wanted.) */
static __always_inline int events_enabled(void)
{
	struct datapath_config *config = bpf_map_lookup_elem(&mb_config, &array_key0);

	return !config || !(config->flags & CONFIG_F_EVENTS_DISABLED);
}

static __always_inline void events_count(int lost)
{
	struct event_stats *stats = bpf_map_lookup_elem(&mb_event_stats, &array_key0);

	if (!stats)
		return;
	/* Per-CPU value and BPF programs do not migrate: a plain add is enough. */
	if (lost)
		stats->lost += 1;
	else
		stats->emitted += 1;
}

/* Nothing else names struct event_record in the object's BTF (a ring buffer has no value type),
 * which the layout check of its Python mirror reads: this does. libbpf makes it a constant. */
#define EVENT_RECORD_BTF_ID() __builtin_btf_type_id(*(struct event_record *)0, 0)

/* Write one record, events being enabled (asked by the caller); verdict fields only matter for
 * EVENT_POLICY_VERDICT. */
static __always_inline void write_event(struct __sk_buff *skb, const struct event_ctx *ctx, __u8 type, __u8 subtype,
					__u8 drop_reason, __u8 match_type, __u8 action)
{
	struct event_record *rec;
	__u32 cap;

	if (!EVENT_RECORD_BTF_ID())
		return;
	rec = bpf_ringbuf_reserve(&mb_events, sizeof(*rec), 0);
	if (!rec) {
		events_count(1);
		return;
	}
	rec->type = type;
	rec->subtype = subtype;
	rec->ep_id = ctx->ep_id;
	rec->flags = 0;
	rec->drop_reason = drop_reason;
	rec->trace_reason = ctx->trace_reason;
	rec->ktime = bpf_ktime_get_ns();
	rec->ifindex = skb->ifindex;
	rec->orig_len = skb->len;
	rec->src_identity = ctx->src_identity;
	rec->dst_identity = ctx->dst_identity;
	rec->direction = ctx->direction;
	rec->match_type = match_type;
	rec->action = action;
	rec->protocol = ctx->protocol;
	rec->dport = ctx->dport;
	rec->pad1 = 0;
	rec->pad2 = 0;
	cap = skb->len;
	if (cap > EVENT_CAPTURE_LEN)
		cap = EVENT_CAPTURE_LEN;
	if (cap == 0 || bpf_skb_load_bytes(skb, 0, rec->data, cap) < 0)
		cap = 0;
	rec->cap_len = cap;
	bpf_ringbuf_submit(rec, 0);
	events_count(0);
}

/* Write one record if events are enabled. */
static __always_inline void emit_event(struct __sk_buff *skb, const struct event_ctx *ctx, __u8 type, __u8 subtype,
				       __u8 drop_reason, __u8 match_type, __u8 action)
{
	if (events_enabled())
		write_event(skb, ctx, type, subtype, drop_reason, match_type, action);
}

/* A trace at observation point `point` (TRACE_*), if monitor aggregation lets it be written
 * (ctx->report: conntrack reports this packet). */
static __always_inline void emit_trace(struct __sk_buff *skb, const struct event_ctx *ctx, __u8 point)
{
	if (trace_wanted(point, ctx->report)) /* asks whether events are enabled too */
		write_event(skb, ctx, EVENT_TRACE, point, 0, POLICY_MATCH_NONE, 0);
}

/* The verdict of policy on a new connection: `reason` is REASON_FORWARDED or the drop reason. */
static __always_inline void emit_policy_verdict(struct __sk_buff *skb, const struct event_ctx *ctx, __u8 match_type,
						int reason)
{
	__u8 action = reason == REASON_FORWARDED ? POLICY_ACTION_ALLOW : POLICY_ACTION_DENY;

	emit_event(skb, ctx, EVENT_POLICY_VERDICT, 0, (__u8)reason, match_type, action);
}

/* Count the drop, write its record, and return the verdict that drops the packet. */
static __always_inline int drop_notify(struct __sk_buff *skb, const struct event_ctx *ctx, __u8 reason)
{
	emit_event(skb, ctx, EVENT_DROP, reason, reason, POLICY_MATCH_NONE, 0);
	return drop_packet(skb, ctx->direction, reason);
}

#endif /* MEMBRANE_EVENTS_H */
