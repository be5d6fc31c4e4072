/* SPDX-License-Identifier: GPL-2.0 */
/* Membrane datapath: includes, verdicts and small helpers every program uses. */
#ifndef MEMBRANE_COMMON_H
#define MEMBRANE_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <linux/types.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* Verdicts a tc program returns (linux/pkt_cls.h names, kept here for readability). */
#define CTX_ACT_OK       TC_ACT_OK       /* continue into the kernel stack */
#define CTX_ACT_DROP     TC_ACT_SHOT     /* drop the packet */
#define CTX_ACT_REDIRECT TC_ACT_REDIRECT /* bpf_redirect() decided where it goes */

/* Is [ptr, ptr + len) inside the packet? The verifier needs this before every access. */
#define PKT_HAS(ptr, len, data_end) ((void *)(ptr) + (len) <= (void *)(data_end))

/* skb->data and skb->data_end, loaded from the context at each call. Written as one load in inline
 * assembly so that clang cannot keep `&skb->data_end` in a register or on the stack and load through
 * it later: the verifier refuses a load through a modified context pointer ("dereference of modified
 * ctx ptr"), which is what clang produced once from_netdev re-read the packet after IP-in-IP decap. */
static __always_inline void *ctx_data(const struct __sk_buff *skb)
{
	void *data;

	asm volatile("%0 = *(u32 *)(%1 + %2)" : "=r"(data) : "r"(skb), "i"(__builtin_offsetof(struct __sk_buff, data)));
	return data;
}

static __always_inline void *ctx_data_end(const struct __sk_buff *skb)
{
	void *data_end;

	asm volatile("%0 = *(u32 *)(%1 + %2)" : "=r"(data_end)
		     : "r"(skb), "i"(__builtin_offsetof(struct __sk_buff, data_end)));
	return data_end;
}

#endif /* MEMBRANE_COMMON_H */
