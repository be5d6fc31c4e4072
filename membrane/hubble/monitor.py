"""Cilium monitor vocabulary: message types, trace observation points, trace reasons, drop
reason texts and reserved identity names, as Hubble prints them."""

from __future__ import annotations

from membrane.hubble.proto.flow import flow_pb2

# Monitor message types (CiliumEventType.type).
MSG_DROP = 1
MSG_DEBUG = 2
MSG_CAPTURE = 3
MSG_TRACE = 4
MSG_POLICY_VERDICT = 5
MSG_TRACE_SOCK = 7
MSG_ACCESS_LOG = 129
MSG_AGENT = 130

# Datapath trace observation points (CiliumEventType.sub_type of trace events).
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
TRACE_FROM_CRYPTO = 12
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


def observation_point(point: int) -> int:
    """Datapath trace point -> flow.TraceObservationPoint (to-endpoint is 101, others equal)."""
    if point == TRACE_TO_LXC:
        return flow_pb2.TO_ENDPOINT
    return point if point in TRACE_POINT_NAMES else flow_pb2.UNKNOWN_POINT


# Datapath conntrack trace reasons; bit 0x80 marks encrypted traffic.
CT_REASON_NEW = 0
CT_REASON_ESTABLISHED = 1
CT_REASON_REPLY = 2
CT_REASON_RELATED = 3
CT_REASON_REOPENED = 4
CT_REASON_UNKNOWN = 5
CT_REASON_SRV6_ENCAP = 6
CT_REASON_SRV6_DECAP = 7
CT_REASON_ENCRYPT_OVERLAY = 8
CT_REASON_ENCRYPT_MASK = 0x80


def trace_reason(reason: int) -> int:
    """Datapath trace reason -> flow.TraceReason."""
    reason &= ~CT_REASON_ENCRYPT_MASK
    if reason == CT_REASON_UNKNOWN or reason > CT_REASON_ENCRYPT_OVERLAY:
        return flow_pb2.TRACE_REASON_UNKNOWN
    return reason + 1 if reason <= CT_REASON_REOPENED else reason


# Drops of a packet whose source (address or MAC) was not its sender's own: the flow names the
# endpoint that sent it rather than the address it claimed.
SPOOFED_SOURCE_REASONS = frozenset({130, 132})

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
    """The datapath's text for a drop reason, as `hubble observe` prints it."""
    return DROP_REASON_TEXTS.get(reason, f"Unknown drop reason ({reason})")


RESERVED_IDENTITY_NAMES: dict[int, str] = {
    0: "unknown",
    1: "host",
    2: "world",
    3: "unmanaged",
    4: "health",
    5: "init",
    6: "remote-node",
    7: "kube-apiserver",
    8: "ingress",
    9: "world-ipv4",
    10: "world-ipv6",
}

POLICY_MATCH_NAMES: dict[int, str] = {
    0: "none",
    1: "L3-Only",
    2: "L3-L4",
    3: "L4-Only",
    4: "all",
    5: "L3-Proto",
    6: "Proto-Only",
}
