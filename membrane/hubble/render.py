"""`hubble observe` output formats: compact (default), jsonpb/json, dict and table."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, tzinfo

from google.protobuf import json_format

from membrane.hubble import monitor
from membrane.hubble.l7flow import l7_type_text
from membrane.hubble.packet import summary as l34_summary
from membrane.hubble.proto.flow import flow_pb2
from membrane.hubble.proto.observer import observer_pb2
from membrane.hubble.timefmt import timestamp

POLICY_VERDICT_WORDS = {flow_pb2.FORWARDED: "ALLOWED", flow_pb2.DROPPED: "DENIED", flow_pb2.AUDIT: "AUDITED"}


def _port(flow: flow_pb2.Flow, source: bool) -> int:
    kind = flow.l4.WhichOneof("protocol")
    if kind not in ("TCP", "UDP", "SCTP"):
        return 0
    layer = getattr(flow.l4, kind)
    return layer.source_port if source else layer.destination_port


def _host(flow: flow_pb2.Flow, source: bool, numeric: bool) -> str:
    ep = flow.source if source else flow.destination
    ip = flow.IP.source if source else flow.IP.destination
    svc = flow.source_service if source else flow.destination_service
    names = flow.source_names if source else flow.destination_names
    if numeric:
        host = ip
    elif ep.pod_name:
        host = f"{ep.namespace}/{ep.pod_name}"
    elif svc.name:
        host = f"{svc.namespace}/{svc.name}"
    elif names:
        host = ",".join(names)
    else:
        host = ip
    port = _port(flow, source)
    if port:
        host = f"[{host}]:{port}" if ":" in host and "/" not in host else f"{host}:{port}"
    return host


def identity_text(identity: int) -> str:
    """`(ID:54400)`, or `(world)`-style names for reserved identities."""
    name = monitor.RESERVED_IDENTITY_NAMES.get(identity)
    return f"({name})" if name else f"(ID:{identity})"


def event_type_text(flow: flow_pb2.Flow) -> str:
    """The compact `<type>` column: trace point, drop reason text or policy-verdict:…"""
    et = flow.event_type
    if et.type == monitor.MSG_TRACE:
        return monitor.TRACE_POINT_NAMES.get(et.sub_type, f"trace-{et.sub_type}")
    if et.type == monitor.MSG_DROP:
        return monitor.drop_reason_text(flow.drop_reason_desc or et.sub_type)
    if et.type == monitor.MSG_POLICY_VERDICT:
        match = monitor.POLICY_MATCH_NAMES.get(flow.policy_match_type, str(flow.policy_match_type))
        direction = flow_pb2.TrafficDirection.Name(flow.traffic_direction)
        return f"policy-verdict:{match} {direction}"
    if flow.Type == flow_pb2.L7:
        return l7_type_text(flow)
    return "UNKNOWN"


def verdict_text(flow: flow_pb2.Flow) -> str:
    if flow.event_type.type == monitor.MSG_POLICY_VERDICT:
        return POLICY_VERDICT_WORDS.get(flow.verdict, flow_pb2.Verdict.Name(flow.verdict))
    return flow_pb2.Verdict.Name(flow.verdict)


def summary_text(flow: flow_pb2.Flow) -> str:
    return flow.Summary or l34_summary(flow.l4 if flow.HasField("l4") else None, flow.IP)


def _ends(flow: flow_pb2.Flow, numeric: bool) -> tuple[str, str, str]:
    """(first end, arrow, second end) with the connection originator first."""
    src = f"{_host(flow, True, numeric)} {identity_text(flow.source.identity)}"
    dst = f"{_host(flow, False, numeric)} {identity_text(flow.destination.identity)}"
    if not flow.HasField("is_reply"):
        return src, "<>", dst
    if flow.is_reply.value:
        return dst, "<-", src
    return src, "->", dst


def compact(
    flow: flow_pb2.Flow, *, node_name: bool = False, numeric: bool = False, tz: tzinfo | None = UTC,
    time_format: str = "StampMilli",
) -> str:
    """One `hubble observe` compact line."""
    first, arrow, second = _ends(flow, numeric)
    node = f" [{flow.node_name}]" if node_name else ""
    return (
        f"{timestamp(flow, tz, time_format)}{node}: {first} {arrow} {second} "
        f"{event_type_text(flow)} {verdict_text(flow)} ({summary_text(flow)})"
    )


def response_for(flow: flow_pb2.Flow) -> observer_pb2.GetFlowsResponse:
    """Wrap a flow the way GetFlows streams it (node_name and time copied from the flow)."""
    resp = observer_pb2.GetFlowsResponse(flow=flow, node_name=flow.node_name)
    resp.time.CopyFrom(flow.time)
    return resp


def to_dict(message: flow_pb2.Flow | observer_pb2.GetFlowsResponse) -> dict:
    """protojson with proto field names (Hubble's `UseProtoNames`)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def jsonpb(message: flow_pb2.Flow | observer_pb2.GetFlowsResponse) -> str:
    """One `hubble observe -o json` line: a GetFlowsResponse in protojson."""
    if isinstance(message, flow_pb2.Flow):
        message = response_for(message)
    return json.dumps(to_dict(message), separators=(",", ":"))


def _columns(flow: flow_pb2.Flow, node_name: bool, numeric: bool, tz: tzinfo | None,
             time_format: str = "StampMilli") -> list[str]:
    first, _, second = _ends(flow, numeric)
    src, dst = first.rsplit(" ", 1)[0], second.rsplit(" ", 1)[0]
    cols = [timestamp(flow, tz, time_format)] + ([flow.node_name] if node_name else [])
    return cols + [src, dst, event_type_text(flow), verdict_text(flow), summary_text(flow)]


def table_columns(flow: flow_pb2.Flow) -> list[str]:
    """TIMESTAMP SOURCE DESTINATION TYPE VERDICT SUMMARY of one flow (UTC)."""
    return _columns(flow, False, False, UTC)


def dict_block(
    flow: flow_pb2.Flow, *, node_name: bool = False, numeric: bool = False, tz: tzinfo | None = UTC,
    time_format: str = "StampMilli",
) -> str:
    """One `-o dict` block (without the dash separator)."""
    keys = (
        ["TIMESTAMP"]
        + (["NODE"] if node_name else [])
        + ["SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"]
    )
    values = _columns(flow, node_name, numeric, tz, time_format)
    return "\n".join(f"{k:>11}: {v}" for k, v in zip(keys, values, strict=True))


def dicts(flows: Iterable[flow_pb2.Flow], **kwargs: object) -> str:
    """`-o dict`: blocks separated by a line of dashes."""
    return "\n------------\n".join(dict_block(f, **kwargs) for f in flows)  # type: ignore[arg-type]


def table(
    flows: Sequence[flow_pb2.Flow], *, node_name: bool = False, numeric: bool = False, tz: tzinfo | None = UTC,
    time_format: str = "StampMilli",
) -> str:
    """`-o table`: aligned columns under TIMESTAMP [NODE] SOURCE DESTINATION TYPE VERDICT SUMMARY."""
    header = (
        ["TIMESTAMP"]
        + (["NODE"] if node_name else [])
        + ["SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"]
    )
    rows = [header] + [_columns(f, node_name, numeric, tz, time_format) for f in flows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = [
        "   ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "   " + r[-1] for r in rows
    ]
    return "\n".join(line.rstrip() for line in lines)
