/* SPDX-License-Identifier: GPL-2.0 */
/* Every map shared between programs and the control plane: key/value layouts and definitions.
 *
 * This file is the ABI with user space. The Python mirrors live in membrane/datapath/maps/ and
 * tests/unit/test_map_layout.py compares them with the BTF of the compiled object, so any change
 * here must be made there too. Layouts are naturally aligned with explicit padding (no implicit
 * holes), because user space writes whole structs and the kernel hashes every key byte.
 * Maps are pinned by name under the node's pin directory (libbpf pin_root_path).
 */
#ifndef MEMBRANE_MAPS_H
#define MEMBRANE_MAPS_H

#include "common.h"

/* ---- mb_endpoints: local endpoints by IPv4 address ---------------------------------------- */

#define ENDPOINTS_MAP_SIZE 65536

struct endpoint_key {
	__u32 ip4; /* network byte order */
};

struct endpoint_info {
	__u32 ifindex;      /* host-side veth (lxc...) in the node netns */
	__u16 ep_id;        /* endpoint id, as shown by `membrane endpoint list` */
	__u16 flags;        /* POLICY_*_ENFORCED bits below */
	__u8  pod_mac[6];   /* MAC of eth0 inside the pod */
	__u8  lxc_mac[6];   /* MAC of the host-side veth; the pod's next hop */
	__u32 sec_identity; /* security identity of the endpoint */
	__u32 pad;          /* must be 0 */
};

/* endpoint_info.flags: policy is enforced in this direction (otherwise everything is allowed). */
#define POLICY_INGRESS_ENFORCED (1 << 0)
#define POLICY_EGRESS_ENFORCED  (1 << 1)

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ENDPOINTS_MAP_SIZE);
	__type(key, struct endpoint_key);
	__type(value, struct endpoint_info);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_endpoints SEC(".maps");

/* ---- mb_lxc: the endpoint bound to each pod veth (host side), by ifindex ------------------ */

/* from_container takes the sending endpoint from the device the packet arrived on, never from
 * the packet: a source address that is not this endpoint's is spoofed (DROP_INVALID_SIP). */
struct lxc_key {
	__u32 ifindex; /* host-side veth (lxc...) in the node netns */
};

struct lxc_info {
	__u32 ip4; /* the endpoint's IPv4 address (network byte order): its mb_endpoints key */
	__u32 pad; /* must be 0 */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ENDPOINTS_MAP_SIZE);
	__type(key, struct lxc_key);
	__type(value, struct lxc_info);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_lxc SEC(".maps");

/* ---- mb_metrics: packets and bytes per (reason, direction), per CPU ----------------------- */

#define METRICS_MAP_SIZE 1024

#define METRIC_INGRESS 1 /* to the container */
#define METRIC_EGRESS  2 /* from the container */

struct metrics_key {
	__u8  reason; /* 0 forwarded, otherwise a DROP_* reason (drop.h) */
	__u8  dir;    /* METRIC_INGRESS or METRIC_EGRESS */
	__u16 pad1;   /* must be 0 */
	__u32 pad2;   /* must be 0 */
};

struct metrics_value {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, METRICS_MAP_SIZE);
	__type(key, struct metrics_key);
	__type(value, struct metrics_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_metrics SEC(".maps");

/* ---- mb_ipcache: security identity (and tunnel endpoint) of every known prefix ------------ */

#define IPCACHE_MAP_SIZE 524288

struct ipcache_key {
	__u32 prefixlen; /* LPM trie: significant bits of ip4 (0..32) */
	__u32 ip4;       /* network byte order */
};

struct ipcache_value {
	__u32 sec_identity;    /* identity of the addresses in the prefix */
	__u32 tunnel_endpoint; /* node IPv4 (network order) hosting them; 0 when local or unknown */
	__u8  flags;           /* IPCACHE_F_* */
	__u8  pad1;            /* must be 0 */
	__u16 pad2;            /* must be 0 */
};

/* ipcache_value.flags: a node's address whose identity is a CIDR one (policyCIDRMatchMode=nodes,
 * membrane/policy/nodecidr.py): the datapath still treats it as a node's. */
#define IPCACHE_F_NODE (1 << 0)

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, IPCACHE_MAP_SIZE);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_ipcache SEC(".maps");

/* ---- mb_policy: L3/L4 policy of every local endpoint -------------------------------------- */

/* One HASH for all endpoints (Cilium has one map per endpoint). A key matches a new
 * connection of endpoint ep_id in `direction` with a peer of identity sec_identity (0 = any
 * identity), IP protocol `protocol` (0 = any protocol, then dport and port_prefix are 0) and a
 * destination port whose first `port_prefix` bits equal dport's (16 = exactly dport, 0 = any
 * port). A port range is written as the few aligned prefix blocks that cover it exactly. For
 * ICMP the "port" is the ICMP type (8 = echo request). */

#define POLICY_MAP_SIZE 262144

struct policy_key {
	__u16 ep_id;        /* endpoint_info.ep_id */
	__u8  direction;    /* METRIC_INGRESS (1) or METRIC_EGRESS (2) */
	__u8  protocol;     /* IPPROTO_*, 0 = any */
	__u32 sec_identity; /* peer identity, 0 = any */
	__u16 dport;        /* network byte order, low bits beyond port_prefix are 0 */
	__u8  port_prefix;  /* significant leading bits of dport, 0..16 */
	__u8  pad;          /* must be 0 */
};

#define POLICY_F_DENY (1 << 0)

struct policy_entry {
	__u8  flags;      /* POLICY_F_* */
	__u8  pad1;       /* must be 0 */
	__u16 proxy_port; /* network byte order; 0 = no L7 proxy, else the connection is redirected (proxy.h) */
	__u32 pad2;       /* must be 0 */
	__u64 packets;    /* new connections this entry decided */
	__u64 bytes;      /* bytes of their first packets */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, POLICY_MAP_SIZE);
	__type(key, struct policy_key);
	__type(value, struct policy_entry);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_policy SEC(".maps");

/* ---- mb_ct: connection tracking ----------------------------------------------------------- */

/* An entry is keyed by the tuple of the connection's first packet and where it was seen:
 * CT_EGRESS at the source endpoint's from_container, CT_INGRESS at the destination endpoint's
 * to_container (a flow between two local pods has one of each). ICMP echo uses the identifier
 * as both ports, so request and reply share a tuple. */

#define CT_MAP_SIZE 65536

#define CT_INGRESS 1 /* created by to_container */
#define CT_EGRESS  2 /* created by from_container */
#define CT_SERVICE 3 /* service connection, keyed by the frontend tuple (lb.h) */

struct ct_key {
	__u32 saddr; /* network byte order, of the first packet */
	__u32 daddr;
	__u16 sport; /* network byte order */
	__u16 dport;
	__u8  protocol;
	__u8  direction; /* CT_INGRESS or CT_EGRESS */
	__u16 pad;       /* must be 0 */
};

#define CT_F_TX_CLOSING (1 << 0) /* FIN seen in the original direction */
#define CT_F_RX_CLOSING (1 << 1) /* FIN seen in the reply direction */
#define CT_F_SEEN_REPLY (1 << 2) /* a reply passed */
#define CT_F_PROXY_UPSTREAM (1 << 4) /* a proxy's upstream connection: replies go to the proxy (proxy.h) */

struct ct_entry {
	__u64 tx_packets; /* original direction */
	__u64 tx_bytes;
	__u64 rx_packets; /* reply direction */
	__u64 rx_bytes;
	__u32 lifetime;   /* expiry, seconds of the monotonic clock (bpf_ktime_get_ns) */
	__u32 src_identity; /* identity of the connection's source when the entry was made */
	__u16 flags;      /* CT_F_* */
	__u8  tx_flags_seen; /* TCP flags, original direction */
	__u8  rx_flags_seen; /* TCP flags, reply direction */
	__u32 tx_last_report; /* ct_now() of the last event reported for the original direction */
	__u32 rx_last_report; /* ... and for the reply direction (monitor aggregation, events.h) */
	__u16 rev_nat_index; /* service translation to undo on replies (mb_lb_revnat), 0 = none */
	__u16 proxy_port; /* host order: the connection goes through the L7 proxy on this port (proxy.h), 0 = none */
	__u32 backend_id; /* CT_SERVICE entries: the backend chosen for the connection (mb_lb_be) */
	__u32 pad2;       /* must be 0 */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CT_MAP_SIZE);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_ct SEC(".maps");

/* ---- mb_lb_*: services (per-packet load balancing at from_container, lb.h) ----------------- */

/* A service frontend (address, port, protocol, scope) has one mb_lb_svc entry per backend slot:
 * slot 0 is the service itself (count = number of backends, flags, rev_nat_index; for a maglev
 * service its backend_id holds the maglev table size M), slots 1..count name the backends.
 * Backends live in mb_lb_be by id; mb_lb_revnat gives the frontend of a rev_nat_index, to undo
 * the translation on replies. Writers add backends and slots before raising the slot-0 count,
 * and lower the count before removing slots, so a running lookup never meets a hole. */

#define LB_MAP_SIZE        65536
#define LB_MAGLEV_MAP_SIZE 262144
#define LB_AFFINITY_SIZE   65536

#define LB_SCOPE_EXT 0 /* the frontend for every client */
#define LB_SCOPE_INT 1 /* in-cluster clients of a two-scope service (internalTrafficPolicy=Local) */

/* lb_svc_value.flags */
#define LB_F_AFFINITY   (1 << 0) /* sessionAffinity: ClientIP */
#define LB_F_MAGLEV     (1 << 1) /* maglev selection (mb_lb_maglev) instead of random */
#define LB_F_ETP_LOCAL  (1 << 2) /* externalTrafficPolicy=Local */
#define LB_F_ITP_LOCAL  (1 << 3) /* internalTrafficPolicy=Local */
#define LB_F_TWO_SCOPES (1 << 4) /* in-cluster clients use the LB_SCOPE_INT entries */

struct lb_svc_key {
	__u32 address;      /* frontend IPv4, network byte order */
	__u16 dport;        /* network byte order */
	__u8  proto;        /* IPPROTO_TCP / IPPROTO_UDP */
	__u8  scope;        /* LB_SCOPE_* */
	__u16 backend_slot; /* 0 = the service, 1..count = its backends */
	__u16 pad;          /* must be 0 */
};

struct lb_svc_value {
	__u32 backend_id;       /* slot >= 1: mb_lb_be key; slot 0 of a maglev service: table size M */
	__u16 count;            /* slot 0: number of backend slots */
	__u16 rev_nat_index;    /* mb_lb_revnat key of the frontend */
	__u16 flags;            /* LB_F_* */
	__u16 pad;              /* must be 0 */
	__u32 affinity_timeout; /* seconds, with LB_F_AFFINITY */
};

/* lb_backend.flags */
#define LB_BE_F_TERMINATING (1 << 0) /* kept for existing connections, never selected */

struct lb_backend_key {
	__u32 backend_id;
};

struct lb_backend {
	__u32 address; /* network byte order */
	__u16 port;    /* network byte order */
	__u8  proto;
	__u8  flags;   /* LB_BE_F_* */
};

struct lb_revnat_key {
	__u16 rev_nat_index;
	__u16 pad; /* must be 0 */
};

struct lb_revnat {
	__u32 address; /* frontend IPv4, network byte order */
	__u16 port;    /* network byte order */
	__u16 pad;     /* must be 0 */
};

struct lb_maglev_key {
	__u16 rev_nat_index;
	__u16 pad;  /* must be 0 */
	__u32 slot; /* 0..M-1 */
};

struct lb_maglev_value {
	__u32 backend_id;
};

struct lb_affinity_key {
	__u32 client_ip; /* network byte order */
	__u16 rev_nat_index;
	__u16 pad; /* must be 0 */
};

struct lb_affinity {
	__u32 backend_id;
	__u32 last_used; /* ct_now() seconds */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAP_SIZE);
	__type(key, struct lb_svc_key);
	__type(value, struct lb_svc_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_lb_svc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAP_SIZE);
	__type(key, struct lb_backend_key);
	__type(value, struct lb_backend);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_lb_be SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAP_SIZE);
	__type(key, struct lb_revnat_key);
	__type(value, struct lb_revnat);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_lb_revnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAGLEV_MAP_SIZE);
	__type(key, struct lb_maglev_key);
	__type(value, struct lb_maglev_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_lb_maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_AFFINITY_SIZE);
	__type(key, struct lb_affinity_key);
	__type(value, struct lb_affinity);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_lb_affinity SEC(".maps");

/* ---- mb_events: trace, drop and policy-verdict records for Hubble (events.h) ------------- */

#define EVENTS_RINGBUF_SIZE (1 << 20)
#define EVENT_CAPTURE_LEN   128 /* leading packet bytes copied into each record */

/* event_record.type: Cilium's monitor message types (pkg/monitor/api/types.go). */
#define EVENT_DROP           1
#define EVENT_DEBUG          2
#define EVENT_CAPTURE        3
#define EVENT_TRACE          4
#define EVENT_POLICY_VERDICT 5

/* event_record.subtype of EVENT_TRACE: the observation point (Cilium's enum trace_point). */
#define TRACE_TO_LXC       0
#define TRACE_TO_PROXY     1
#define TRACE_TO_HOST      2
#define TRACE_TO_STACK     3
#define TRACE_TO_OVERLAY   4
#define TRACE_FROM_LXC     5
#define TRACE_FROM_PROXY   6
#define TRACE_FROM_HOST    7
#define TRACE_FROM_STACK   8
#define TRACE_FROM_OVERLAY 9
#define TRACE_FROM_NETWORK 10
#define TRACE_TO_NETWORK   11

/* event_record.trace_reason: the packet's conntrack state (Cilium's enum trace_reason). */
#define TRACE_REASON_NEW         0
#define TRACE_REASON_ESTABLISHED 1
#define TRACE_REASON_REPLY       2
#define TRACE_REASON_RELATED     3
#define TRACE_REASON_REOPENED    4
#define TRACE_REASON_UNKNOWN     5 /* not tracked (e.g. ICMP errors) or not looked up (drops) */

/* event_record.match_type of EVENT_POLICY_VERDICT (Cilium's POLICY_MATCH_*). */
#define POLICY_MATCH_NONE       0
#define POLICY_MATCH_L3_ONLY    1
#define POLICY_MATCH_L3_L4      2
#define POLICY_MATCH_L4_ONLY    3
#define POLICY_MATCH_ALL        4
#define POLICY_MATCH_L3_PROTO   5
#define POLICY_MATCH_PROTO_ONLY 6

/* event_record.action of EVENT_POLICY_VERDICT. */
#define POLICY_ACTION_ALLOW 1
#define POLICY_ACTION_DENY  2

/* One record: a fixed header, then the packet's first cap_len bytes (from its Ethernet header). */
struct event_record {
	__u8  type;         /* EVENT_* */
	__u8  subtype;      /* trace: TRACE_* point; drop: the drop reason; policy verdict: 0 */
	__u16 ep_id;        /* endpoint whose hook emitted the event; 0 if unknown */
	__u16 flags;        /* reserved, 0 (Cilium: IPv6, L3 device) */
	__u8  drop_reason;  /* drop or denied verdict: DROP_* reason (drop.h); otherwise 0 */
	__u8  trace_reason; /* TRACE_REASON_* */
	__u64 ktime;        /* bpf_ktime_get_ns(): CLOCK_MONOTONIC nanoseconds */
	__u32 ifindex;      /* device of the hook (the endpoint's lxc device) */
	__u32 orig_len;     /* length of the packet */
	__u32 cap_len;      /* bytes of data[] that hold the packet, <= EVENT_CAPTURE_LEN */
	__u32 src_identity; /* security identity of the packet's source, 0 if not resolved */
	__u32 dst_identity; /* ... of its destination */
	__u8  direction;    /* METRIC_INGRESS (to the endpoint) or METRIC_EGRESS (from it) */
	__u8  match_type;   /* policy verdict: POLICY_MATCH_* */
	__u8  action;       /* policy verdict: POLICY_ACTION_* */
	__u8  protocol;     /* IP protocol, 0 if not IPv4 */
	__u16 dport;        /* policy verdict: destination port (host order) or ICMP type */
	__u16 pad1;         /* 0 */
	__u32 pad2;         /* 0 */
	__u8  data[EVENT_CAPTURE_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENTS_RINGBUF_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_events SEC(".maps");

/* ---- mb_event_stats: records written and lost (ring buffer full), per CPU ----------------- */

struct event_stats {
	__u64 emitted;
	__u64 lost;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct event_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_event_stats SEC(".maps");

/* ---- mb_config: runtime switches of the datapath (one entry, key 0) ----------------------- */

/* An all-zero entry (what a new array holds) is the default configuration. */
#define CONFIG_F_EVENTS_DISABLED (1 << 0) /* write no records to mb_events */

/* Monitor aggregation (monitor_aggregation.h); each field's 0 is Cilium's default. */
struct datapath_config {
	__u32 flags;           /* CONFIG_F_* */
	__u8  aggregation;     /* level + 1 (1 none .. 5 maximum); 0: medium */
	__u8  report_flags;    /* TCP flags whose first sighting is reported; 0: all */
	__u16 report_interval; /* seconds between reports of an active connection; 0: 5 */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct datapath_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_config SEC(".maps");

/* ---- mb_nat: SNAT tuples of BPF masquerade and NodePort (nat.h) -------------------------- */

/* Every translated connection has two entries. NAT_DIR_OUT is keyed by the tuple of an outgoing
 * packet before translation (pod -> outside for masquerade, client -> remote backend for a
 * NodePort in SNAT mode) and gives the source to write (node IP, allocated port). NAT_DIR_IN is
 * keyed by the reply as it arrives at the node (peer -> node IP:allocated port) and gives the
 * destination to restore; for NodePort it also gives the source to restore (the frontend).
 * NAT_DIR_REV_DNAT is keyed by the reply of a NodePort connection served by a local backend as
 * it leaves the node (backend -> client) and gives the frontend to write as its source.
 * ICMP echo uses the identifier as both ports. Entries age out of the LRU map. */

#define NAT_MAP_SIZE 131072

#define NAT_DIR_OUT      1
#define NAT_DIR_IN       2
#define NAT_DIR_REV_DNAT 3

struct nat_key {
	__u32 saddr; /* network byte order */
	__u32 daddr;
	__u16 sport; /* network byte order */
	__u16 dport;
	__u8  protocol;
	__u8  direction; /* NAT_DIR_* */
	__u16 pad;       /* must be 0 */
};

#define NAT_F_NODEPORT (1 << 0) /* the entry belongs to a NodePort connection */

struct nat_entry {
	__u32 addr;     /* OUT: new source; IN: original destination; REV_DNAT: new source */
	__u32 rev_addr; /* IN of a NodePort connection: the source to restore (frontend) */
	__u16 port;     /* network byte order, as addr */
	__u16 rev_port; /* network byte order, as rev_addr */
	__u16 flags;    /* NAT_F_* */
	__u16 pad;      /* must be 0 */
	__u32 created;  /* ct_now() seconds */
	__u32 pad2;     /* must be 0 */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NAT_MAP_SIZE);
	__type(key, struct nat_key);
	__type(value, struct nat_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_nat SEC(".maps");

/* ---- mb_ipmasq_v4: ip-masq-agent's non-masquerade CIDRs (LPM trie; ipmasq.h) ------------- */

/* Cilium's cilium_ipmasq_v4: with HOST_F_IP_MASQ_AGENT, to_netdev leaves the source of a pod's
 * packet alone when a prefix here covers its destination. Written by the agent only. */
#define IPMASQ_MAP_SIZE 16384

struct ipmasq_key {
	__u32 prefixlen; /* LPM trie: significant bits of ip4 (0..32) */
	__u32 ip4;       /* network byte order */
};

struct ipmasq_value {
	__u32 flags; /* reserved, 0 */
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, IPMASQ_MAP_SIZE);
	__type(key, struct ipmasq_key);
	__type(value, struct ipmasq_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_ipmasq_v4 SEC(".maps");

/* ---- mb_egress_v4: egress gateway policy rows (LPM trie; egress_gw.h) ----------------------- */

/* Cilium's cilium_egress_gw_policy_v4: (source pod IP, destination CIDR) -> the gateway node and
 * the egress IP. The key's prefixlen counts the 32 bits of saddr plus the destination's bits, so a
 * lookup with prefixlen 64 finds the longest destination prefix for that exact source. gateway_ip
 * 0.0.0.0: no gateway node (drop 194); 0.0.0.1: excluded/in-cluster (normal path). egress_ip
 * 0.0.0.0 on the gateway node: no egress IP (drop 204). Written by the agent only. */
#define EGRESS_MAP_SIZE 16384
#define EGRESS_PREFIX_STATIC 32 /* saddr is always matched whole */
#define EGRESS_GATEWAY_NOT_FOUND 0
#define EGRESS_GATEWAY_EXCLUDED bpf_htonl(1)

struct egress_key {
	__u32 prefixlen; /* LPM trie: 32 + significant bits of daddr */
	__u32 saddr;     /* source pod IPv4, network byte order */
	__u32 daddr;     /* destination CIDR, network byte order */
};

struct egress_value {
	__u32 egress_ip;  /* SNAT address on the gateway, network byte order; 0 = none */
	__u32 gateway_ip; /* gateway node's InternalIP; 0 = none, 0.0.0.1 = excluded */
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, EGRESS_MAP_SIZE);
	__type(key, struct egress_key);
	__type(value, struct egress_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_egress_v4 SEC(".maps");

/* ---- mb_tunnel: the node owning each remote pod CIDR (tunnel routing; tunnel.h) ----------- */

/* Cilium's cilium_tunnel_map: from_container encapsulates a packet whose destination a prefix
 * here covers toward that node (VXLAN, the sender's identity as VNI; or IPIP, TUNNEL_F_IPIP).
 * Written by the agent from the store's Node objects; this node's own CIDR is never in it, nor
 * (encapsulation.mode=CrossSubnet) the CIDRs of nodes on this node's subnet. */
#define TUNNEL_MAP_SIZE 65536

struct tunnel_key {
	__u32 prefixlen; /* LPM trie: significant bits of ip4 (0..32) */
	__u32 ip4;       /* pod CIDR, network byte order */
};

#define TUNNEL_F_IPIP (1 << 0) /* IP-in-IP built in BPF (ipip.h) instead of the VXLAN device */

struct tunnel_value {
	__u32 node_ip; /* underlay IPv4 of the owning node, network byte order */
	__u32 flags;   /* TUNNEL_F_*; 0: VXLAN */
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, TUNNEL_MAP_SIZE);
	__type(key, struct tunnel_key);
	__type(value, struct tunnel_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_tunnel SEC(".maps");

/* ---- mb_tunnel_config: this node's collect-metadata VXLAN device (one entry, key 0) ------- */

struct tunnel_config {
	__u32 ifindex; /* the VXLAN device; 0: tunnel routing off */
	__u32 pad;     /* must be 0 */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tunnel_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_tunnel_config SEC(".maps");

/* ---- mb_host_config: the node device's addresses (one entry, key 0; host.c) -------------- */

#define HOST_F_MASQUERADE   (1 << 0) /* BPF masquerade of pod traffic leaving the node */
#define HOST_F_HOST_ROUTING (1 << 1) /* eBPF host routing: pod traffic bypasses the node's IP stack */
#define HOST_F_IP_MASQ_AGENT (1 << 2) /* mb_ipmasq_v4 names more destinations not to masquerade */

struct host_config {
	__u32 node_ip;       /* IPv4 of the node device, network byte order; 0 = not configured */
	__u32 native_cidr;   /* ipv4NativeRoutingCIDR network, network byte order */
	__u8  native_prefix; /* its prefix length, 0..32 */
	__u8  pad1;          /* must be 0 */
	__u16 flags;         /* HOST_F_* */
	__u32 pad2;          /* must be 0 */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct host_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_host_config SEC(".maps");

/* ---- mb_host_ep: the host endpoint (host firewall; one entry, key 0; host_firewall.h) -------- */

/* hostFirewall.enabled: the node itself is an endpoint (reserved:host) whose rows in mb_policy
 * carry ep_id; flags say in which direction they are enforced. ep_id 0: no host firewall, the
 * node's own traffic is neither tracked nor filtered. */
struct host_endpoint {
	__u16 ep_id; /* the host endpoint's id (mb_policy rows); 0 = host firewall off */
	__u16 flags; /* POLICY_INGRESS_ENFORCED / POLICY_EGRESS_ENFORCED */
	__u32 pad;   /* must be 0 */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct host_endpoint);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_host_ep SEC(".maps");

#endif /* MEMBRANE_MAPS_H */
