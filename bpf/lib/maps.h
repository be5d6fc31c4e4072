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
	__u16 flags;        /* ENDPOINT_F_*; reserved, 0 today */
	__u8  pod_mac[6];   /* MAC of eth0 inside the pod */
	__u8  lxc_mac[6];   /* MAC of the host-side veth; the pod's next hop */
	__u32 sec_identity; /* security identity of the endpoint (policy, later) */
	__u32 pad;          /* must be 0 */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ENDPOINTS_MAP_SIZE);
	__type(key, struct endpoint_key);
	__type(value, struct endpoint_info);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_endpoints SEC(".maps");

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

#endif /* MEMBRANE_MAPS_H */
