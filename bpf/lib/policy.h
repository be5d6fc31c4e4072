/* SPDX-License-Identifier: GPL-2.0 */
/* L3/L4 policy verdict for a new connection, from mb_policy.
 *
 * Lookups, most specific first: for the peer's identity and then any identity (0): the protocol
 * with the destination port at every prefix length from 16 (exact port) down to 0 (any port),
 * then any protocol. Every lookup runs unless one finds a deny: a matching deny wins wherever
 * it is (181); otherwise the first allow found decides; no allow at all is 133. The deciding
 * entry's key also gives the verdict's match type for policy-verdict events (POLICY_MATCH_*).
 */
#ifndef MEMBRANE_POLICY_H
#define MEMBRANE_POLICY_H

#include "drop.h"
#include "maps.h"

#define POLICY_PORT_BITS 16

struct policy_match {
	struct policy_entry *allow; /* first (most specific) allow, NULL if none */
	struct policy_entry *deny;  /* a deny, NULL if none */
	__u8 allow_type;            /* POLICY_MATCH_* of the allow's key */
	__u8 deny_type;             /* POLICY_MATCH_* of the deny's key */
};

/* What a key matches on, as a policy-verdict match type. */
static __always_inline __u8 policy_match_type(const struct policy_key *key)
{
	if (key->sec_identity) {
		if (!key->protocol)
			return POLICY_MATCH_L3_ONLY;
		return key->port_prefix ? POLICY_MATCH_L3_L4 : POLICY_MATCH_L3_PROTO;
	}
	if (!key->protocol)
		return POLICY_MATCH_ALL;
	return key->port_prefix ? POLICY_MATCH_L4_ONLY : POLICY_MATCH_PROTO_ONLY;
}

static __always_inline void policy_probe(struct policy_key *key, struct policy_match *match)
{
	struct policy_entry *entry;

	if (match->deny)
		return;
	entry = bpf_map_lookup_elem(&mb_policy, key);
	if (!entry)
		return;
	if (entry->flags & POLICY_F_DENY) {
		match->deny = entry;
		match->deny_type = policy_match_type(key);
	} else if (!match->allow) {
		match->allow = entry;
		match->allow_type = policy_match_type(key);
	}
}

static __always_inline void policy_probe_identity(struct policy_key *key, __u16 port, struct policy_match *match)
{
	int bits;

	if (key->protocol) {
		for (bits = POLICY_PORT_BITS; bits >= 0; bits--) {
			__u16 mask = bits ? (__u16)(0xffff << (POLICY_PORT_BITS - bits)) : 0;

			key->port_prefix = bits;
			key->dport = bpf_htons(port & mask);
			policy_probe(key, match);
		}
	}
	key->protocol = 0;
	key->dport = 0;
	key->port_prefix = 0;
	policy_probe(key, match);
}

/* Verdict of endpoint ep_id's policy in `direction` for a new connection with a peer of
 * `identity`: REASON_FORWARDED, DROP_POLICY or DROP_POLICY_DENY. Counts the deciding entry and
 * sets *match_type to its POLICY_MATCH_* (POLICY_MATCH_NONE when nothing matched) and, for an
 * allow, *proxy_port to its L7 proxy port (host order, 0 = none). */
static __always_inline int policy_verdict(__u16 ep_id, __u8 direction, __u32 identity, __u8 protocol, __u16 port,
					  __u32 bytes, __u8 *match_type, __u32 *proxy_port)
{
	struct policy_match match = {};
	struct policy_key key = {};
	struct policy_entry *decided;

	key.ep_id = ep_id;
	key.direction = direction;
	key.sec_identity = identity;
	key.protocol = protocol;
	policy_probe_identity(&key, port, &match);
	key.sec_identity = 0;
	key.protocol = protocol;
	policy_probe_identity(&key, port, &match);

	decided = match.deny ? match.deny : match.allow;
	if (decided) {
		__sync_fetch_and_add(&decided->packets, 1);
		__sync_fetch_and_add(&decided->bytes, bytes);
	}
	*match_type = match.deny ? match.deny_type : (match.allow ? match.allow_type : POLICY_MATCH_NONE);
	if (match.deny)
		return DROP_POLICY_DENY;
	if (!match.allow)
		return DROP_POLICY;
	*proxy_port = bpf_ntohs(match.allow->proxy_port); /* the deciding allow's L7 redirect (proxy.h) */
	return REASON_FORWARDED;
}

#endif /* MEMBRANE_POLICY_H */
