"""Cilium monitor vocabulary as Hubble prints it: message types, trace observation points and
reasons mapped to the flow API, drop reason texts and reserved identity names. The numbers and
texts themselves are defined once, in membrane.model.datapath_codes (checked against bpf/lib/*.h);
this module names them the way the monitor and Hubble code does."""

from __future__ import annotations

from membrane.hubble.proto.flow import flow_pb2
from membrane.model import datapath_codes as codes
from membrane.model.datapath_codes import DROP_REASON_TEXTS as DROP_REASON_TEXTS
from membrane.model.datapath_codes import POLICY_MATCH_NAMES as POLICY_MATCH_NAMES
from membrane.model.datapath_codes import SPOOFED_SOURCE_REASONS as SPOOFED_SOURCE_REASONS
from membrane.model.datapath_codes import TRACE_FROM_LXC as TRACE_FROM_LXC
from membrane.model.datapath_codes import TRACE_POINT_NAMES as TRACE_POINT_NAMES
from membrane.model.datapath_codes import TRACE_TO_LXC as TRACE_TO_LXC
from membrane.model.datapath_codes import drop_reason_text as drop_reason_text

# Monitor message types (CiliumEventType.type).
MSG_DROP = codes.EVENT_DROP
MSG_DEBUG = codes.EVENT_DEBUG
MSG_CAPTURE = codes.EVENT_CAPTURE
MSG_TRACE = codes.EVENT_TRACE
MSG_POLICY_VERDICT = codes.EVENT_POLICY_VERDICT
MSG_TRACE_SOCK = codes.EVENT_TRACE_SOCK
MSG_ACCESS_LOG = codes.EVENT_ACCESS_LOG
MSG_AGENT = codes.EVENT_AGENT
CT_REASON_ENCRYPT_MASK = codes.TRACE_REASON_ENCRYPT_MASK


def observation_point(point: int) -> int:
    """Datapath trace point -> flow.TraceObservationPoint (to-endpoint is 101, others equal)."""
    if point == TRACE_TO_LXC:
        return flow_pb2.TO_ENDPOINT
    return point if point in TRACE_POINT_NAMES else flow_pb2.UNKNOWN_POINT


def trace_reason(reason: int) -> int:
    """Datapath trace reason -> flow.TraceReason."""
    reason &= ~codes.TRACE_REASON_ENCRYPT_MASK
    if reason == codes.TRACE_REASON_UNKNOWN or reason > codes.TRACE_REASON_ENCRYPT_OVERLAY:
        return flow_pb2.TRACE_REASON_UNKNOWN
    return reason + 1 if reason <= codes.TRACE_REASON_REOPENED else reason


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
