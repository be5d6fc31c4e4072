/* SPDX-License-Identifier: GPL-2.0 */
/* Socket-level load balancing (Cilium's socket-LB, bpf_sock.c): the maps of bpf/sock.c.
 *
 * A pod's connect() (and an unconnected UDP sendmsg()) to a service frontend is translated once,
 * at the socket, to a backend: the packets then carry the backend's address from the start, so
 * from_container finds no frontend to translate and to_container no reply to reverse-translate.
 * recvmsg() and getpeername() give the application the frontend back, from mb_lb_rev_sk.
 *
 * The programs are attached at the root of the cgroup-v2 tree (all of a lab's pods share the
 * host's cgroups), so every socket of the machine meets them: they act only on sockets whose
 * network namespace is one of this node's pods (mb_sock_netns, filled by the agent); every other
 * socket, the host's and other labs' included, is left as it is.
 */
#ifndef MEMBRANE_SOCK_LB_H
#define MEMBRANE_SOCK_LB_H

#include "common.h"

#define SOCK_NETNS_MAP_SIZE 65536
#define SOCK_REV_MAP_SIZE   262144

/* mb_sock_netns: the network namespaces of this node's pods, by netns cookie. */
struct sock_netns_key {
	__u64 cookie; /* bpf_get_netns_cookie() / SO_NETNS_COOKIE */
};

struct sock_netns_info {
	__u32 ipv4;  /* the endpoint's address, network byte order (for the agent's bookkeeping) */
	__u32 flags; /* 0 */
};

/* mb_lb_rev_sk: a translated socket's backend -> its frontend (Cilium's cilium_lb4_reverse_sk). */
struct lb_rev_sk_key {
	__u64 cookie;  /* bpf_get_socket_cookie() */
	__u32 address; /* the backend, network byte order */
	__u16 port;    /* network byte order */
	__u16 pad;     /* must be 0 */
};

struct lb_rev_sk {
	__u32 address; /* the frontend, network byte order */
	__u16 port;    /* network byte order */
	__u16 rev_nat_index;
};

/* mb_lb_sock_aff: sessionAffinity ClientIP at the socket, keyed by the client's netns cookie (the
 * socket has no source address yet at connect(); Cilium keys its socket-LB affinity the same way). */
struct lb_sock_aff_key {
	__u64 netns_cookie;
	__u16 rev_nat_index;
	__u16 pad[3]; /* must be 0 */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCK_NETNS_MAP_SIZE);
	__type(key, struct sock_netns_key);
	__type(value, struct sock_netns_info);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_sock_netns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SOCK_REV_MAP_SIZE);
	__type(key, struct lb_rev_sk_key);
	__type(value, struct lb_rev_sk);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_lb_rev_sk SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_AFFINITY_SIZE);
	__type(key, struct lb_sock_aff_key);
	__type(value, struct lb_affinity);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mb_lb_sock_aff SEC(".maps");

#endif /* MEMBRANE_SOCK_LB_H */
