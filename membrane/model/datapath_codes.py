"""The datapath's numbers, defined once: monitor event types, trace observation points and reasons,
policy-verdict match types and actions, drop reasons and their texts.

They are Cilium's (pkg/monitor/api/types.go, bpf/lib/trace.h, bpf/lib/common.h, pkg/monitor/api/drop.go);
the BPF side defines the ones it emits in bpf/lib/drop.h, lb.h, nat.h (``DROP_*``, ``REASON_FORWARDED``)
and bpf/lib/maps.h (``EVENT_*``, ``TRACE_*``, ``TRACE_REASON_*``, ``POLICY_MATCH_*``, ``POLICY_ACTION_*``),
and tests/unit/test_datapath_codes.py checks every such ``#define`` (and a drop's ``/* "text" */``)
against this module. Everything else — the map decoders, Hubble, metrics, the policy engine —
imports from here.
"""

from __future__ import annotations

# ---- monitor message types (event_record.type; CiliumEventType.type) ---------------------------------------------
EVENT_DROP = 1
EVENT_DEBUG = 2
EVENT_CAPTURE = 3
EVENT_TRACE = 4
EVENT_POLICY_VERDICT = 5
EVENT_TRACE_SOCK = 7  # Cilium's; not emitted by our datapath
EVENT_ACCESS_LOG = 129  # L7 (proxy) records
EVENT_AGENT = 130  # agent notifications

# ---- trace observation points (event_record.subtype of a trace; Cilium's enum trace_point) ------------------------
TRACE_TO_LXC = 0
TRACE_TO_PROXY = 1
TRACE_TO_HOST = 2
TRACE_TO_STACK = 3
TRACE_TO_OVERLAY = 4
TRACE_FROM_LXC = 5
TRACE_FROM_PROXY = 6
TRACE_FROM_HOST = 7
TRACE_FROM_STACK = 8
TRACE_FROM_OVERLAY = 9
TRACE_FROM_NETWORK = 10
TRACE_TO_NETWORK = 11
TRACE_FROM_CRYPTO = 12  # Cilium's; not emitted by our datapath
TRACE_TO_CRYPTO = 13

TRACE_POINT_NAMES: dict[int, str] = {
    TRACE_TO_LXC: "to-endpoint",
    TRACE_TO_PROXY: "to-proxy",
    TRACE_TO_HOST: "to-host",
    TRACE_TO_STACK: "to-stack",
    TRACE_TO_OVERLAY: "to-overlay",
    TRACE_FROM_LXC: "from-endpoint",
    TRACE_FROM_PROXY: "from-proxy",
    TRACE_FROM_HOST: "from-host",
    TRACE_FROM_STACK: "from-stack",
    TRACE_FROM_OVERLAY: "from-overlay",
    TRACE_FROM_NETWORK: "from-network",
    TRACE_TO_NETWORK: "to-network",
    TRACE_FROM_CRYPTO: "from-crypto",
    TRACE_TO_CRYPTO: "to-crypto",
}

# ---- trace reasons (event_record.trace_reason: the conntrack state; Cilium's enum trace_reason) --------------------
TRACE_REASON_NEW = 0
TRACE_REASON_ESTABLISHED = 1
TRACE_REASON_REPLY = 2
TRACE_REASON_RELATED = 3
TRACE_REASON_REOPENED = 4
TRACE_REASON_UNKNOWN = 5  # not tracked (e.g. ICMP errors) or not looked up (drops)
TRACE_REASON_SRV6_ENCAP = 6  # Cilium's, from here on
TRACE_REASON_SRV6_DECAP = 7
TRACE_REASON_ENCRYPT_OVERLAY = 8
TRACE_REASON_ENCRYPT_MASK = 0x80  # bit set on encrypted traffic

# ---- policy verdicts (event_record.match_type / .action) ----------------------------------------------------------
POLICY_MATCH_NONE = 0
POLICY_MATCH_L3_ONLY = 1
POLICY_MATCH_L3_L4 = 2
POLICY_MATCH_L4_ONLY = 3
POLICY_MATCH_ALL = 4
POLICY_MATCH_L3_PROTO = 5
POLICY_MATCH_PROTO_ONLY = 6

POLICY_MATCH_NAMES: dict[int, str] = {
    POLICY_MATCH_NONE: "none",
    POLICY_MATCH_L3_ONLY: "L3-Only",
    POLICY_MATCH_L3_L4: "L3-L4",
    POLICY_MATCH_L4_ONLY: "L4-Only",
    POLICY_MATCH_ALL: "all",
    POLICY_MATCH_L3_PROTO: "L3-Proto",
    POLICY_MATCH_PROTO_ONLY: "Proto-Only",
}

POLICY_ACTION_ALLOW = 1
POLICY_ACTION_DENY = 2

# ---- drop reasons (metrics key, event_record.drop_reason; 0 = forwarded) -----------------------------------------
REASON_FORWARDED = 0
DROP_INVALID_SMAC = 130
DROP_INVALID_SIP = 132
DROP_POLICY = 133  # nothing allowed it (default deny)
DROP_INVALID = 134
DROP_CT_INVALID_HDR = 135
DROP_WRITE_ERROR = 141
DROP_CSUM_L3 = 153
DROP_CSUM_L4 = 154
DROP_NO_SERVICE = 158
DROP_UNSUPPORTED_L2 = 166
DROP_NAT_NO_MAPPING = 167
DROP_FIB_LOOKUP = 169
DROP_POLICY_DENY = 181  # an explicit deny rule
DROP_NO_EGRESS_GATEWAY = 194  # egress gateway policy matches, no gateway node (bpf/lib/egress_gw.h)
DROP_NO_EGRESS_IP = 204  # this node is the gateway but has no egress IP for the row

# Drops of a packet whose source (address or MAC) was not its sender's own: the flow names the
# endpoint that sent it rather than the address it claimed.
SPOOFED_SOURCE_REASONS = frozenset({DROP_INVALID_SMAC, DROP_INVALID_SIP})

DROP_REASON_TEXTS: dict[int, str] = {
    130: "Invalid source mac",
    131: "Invalid destination mac",
    132: "Invalid source ip",
    133: "Policy denied",
    134: "Invalid packet",
    135: "CT: Truncated or invalid header",
    136: "Fragmentation needed",
    137: "CT: Unknown L4 protocol",
    138: "CT: Can't create entry from packet",
    139: "Unsupported L3 protocol",
    140: "Missed tail call",
    141: "Error writing to packet",
    142: "Unknown L4 protocol",
    143: "Unknown ICMPv4 code",
    144: "Unknown ICMPv4 type",
    145: "Unknown ICMPv6 code",
    146: "Unknown ICMPv6 type",
    147: "Error retrieving tunnel key",
    150: "Unknown L3 target address",
    151: "Stale or unroutable IP",
    153: "Error while correcting L3 checksum",
    154: "Error while correcting L4 checksum",
    155: "CT map insertion failed",
    156: "Invalid IPv6 extension header",
    157: "IP fragmentation not supported",
    158: "Service backend not found",
    160: "No tunnel/encapsulation endpoint (datapath BUG!)",
    161: "NAT 46/64 not enabled",
    162: "Reached EDT rate-limiting drop horizon",
    163: "Unknown connection tracking state",
    164: "Local host is unreachable",
    165: "No configuration available to perform policy decision",
    166: "Unsupported L2 protocol",
    167: "No mapping for NAT masquerade",
    168: "Unsupported protocol for NAT masquerade",
    169: "FIB lookup failed",
    170: "Encapsulation traffic is prohibited",
    171: "Invalid identity",
    172: "Unknown sender",
    173: "NAT not needed",
    174: "Is a ClusterIP",
    175: "First logical datagram fragment not found",
    176: "Forbidden ICMPv6 message",
    177: "Denied by LB src range check",
    178: "Socket lookup failed",
    179: "Socket assign failed",
    180: "Proxy redirection not supported for protocol",
    181: "Policy denied by denylist",
    182: "VLAN traffic disallowed by VLAN filter",
    183: "Incorrect VNI from VTEP",
    184: "Failed to update or lookup TC buffer",
    185: "No SID was found for the IP address",
    186: "SRv6 state was removed during tail call",
    187: "L3 translation from IPv4 to IPv6 failed (NAT46)",
    188: "L3 translation from IPv6 to IPv4 failed (NAT64)",
    189: "Authentication required",
    190: "No conntrack map found",
    191: "No nat map found",
    192: "Invalid ClusterID",
    193: "Unsupported packet protocol for DSR encapsulation",
    194: "No egress gateway found",
    195: "Traffic is unencrypted",
    196: "TTL exceeded",
    197: "No node ID found",
    198: "Rate limited",
    199: "IGMP handled",
    200: "IGMP subscribed",
    201: "Multicast handled",
    202: "Host datapath not ready",
    203: "Endpoint policy program not available",
    204: "No Egress IP configured",
    205: "Punt to proxy",
}


def drop_reason_text(reason: int) -> str:
    """The datapath's text for a drop reason, as ``hubble observe`` prints it."""
    return DROP_REASON_TEXTS.get(reason, f"Unknown drop reason ({reason})")
