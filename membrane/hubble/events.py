"""Building a Hubble Flow from one decoded datapath event (trace, drop or policy verdict)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any

from membrane.hubble import monitor
from membrane.hubble.packet import decode_frame, summary
from membrane.hubble.proto.flow import flow_pb2

EVENT_KINDS = {
    "drop": monitor.MSG_DROP,
    "trace": monitor.MSG_TRACE,
    "policy-verdict": monitor.MSG_POLICY_VERDICT,
}


@dataclass(frozen=True)
class DatapathEvent:
    """A decoded ring-buffer record. `kind` is `trace`, `drop` or `policy-verdict` (or the monitor
    message type number). `observation_point` uses the datapath numbering (0 = to-endpoint,
    5 = from-endpoint, …); `trace_reason` the datapath CT reason (0 new, 1 established,
    2 reply, 3 related, 5 unknown). For policy verdicts `ingress` gives the direction, `action`
    is `allow`, `deny` or `audit` and `policy_match_type` Cilium's match type."""

    kind: str | int
    packet: bytes
    timestamp_ns: int
    node_name: str
    observation_point: int = 0
    trace_reason: int | None = None
    drop_reason: int = 0
    src_identity: int = 0
    dst_identity: int = 0
    endpoint_id: int = 0
    ifindex: int = 0
    ifname: str = ""
    ingress: bool | None = None
    action: str = "allow"
    policy_match_type: int = 0

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> DatapathEvent:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def message_type(self) -> int:
        if isinstance(self.kind, int):
            return self.kind
        try:
            return EVENT_KINDS[self.kind]
        except KeyError:
            raise ValueError(f"unknown event kind {self.kind!r}") from None


@dataclass(frozen=True)
class EndpointInfo:
    """What the agent knows about an IP: for pods all fields, for others at least the identity."""

    identity: int = 0
    namespace: str = ""
    pod_name: str = ""
    labels: Sequence[str] = ()
    endpoint_id: int = 0
    workloads: Sequence[tuple[str, str]] = ()  # (name, kind)
    cluster_name: str = ""
    names: Sequence[str] = field(default=())  # DNS names known for the IP


@dataclass(frozen=True)
class PolicyName:
    """A policy a verdict is attributed to, as Hubble's ``flow.Policy`` names it."""

    name: str
    namespace: str
    kind: str
    labels: Sequence[str] = ()
    revision: int = 0


@dataclass(frozen=True)
class PolicyQuestion:
    """Which policies decided this verdict? Asked of the agent for each policy-verdict event."""

    endpoint_id: int
    ingress: bool
    peer_identity: int
    protocol: int  # IP protocol number
    port: int  # destination port (ICMP: the type)
    denied: bool


# the policies behind a verdict and their log values
PolicyAttributor = Callable[[PolicyQuestion], tuple[Sequence[PolicyName], Sequence[str]]]
_L4_NUMBERS = {"TCP": 6, "UDP": 17, "SCTP": 132, "ICMPv4": 1, "ICMPv6": 58}

Lookup = Callable[[str], EndpointInfo | None]
# (ip, port, protocol name) -> the (namespace, name) of the Service using that address, if any
ServiceLookup = Callable[[str, int, str], tuple[str, str] | None]


def _set_services(f: flow_pb2.Flow, lookup_service: ServiceLookup) -> None:
    kind = f.l4.WhichOneof("protocol")
    if kind not in ("TCP", "UDP", "SCTP") or not f.IP.source:
        return
    layer = getattr(f.l4, kind)
    for ip, port, target in ((f.IP.source, layer.source_port, f.source_service),
                             (f.IP.destination, layer.destination_port, f.destination_service)):
        owner = lookup_service(ip, port, kind)
        if owner is not None:
            target.namespace, target.name = owner


def _set_policies(f: flow_pb2.Flow, ev: DatapathEvent, attribute: PolicyAttributor) -> None:
    kind = f.l4.WhichOneof("protocol")
    if ev.ingress is None or kind not in _L4_NUMBERS:
        return
    layer = getattr(f.l4, kind)
    port = layer.type if kind.startswith("ICMP") else layer.destination_port
    denied = f.verdict == flow_pb2.DROPPED
    question = PolicyQuestion(ev.endpoint_id, ev.ingress, ev.src_identity if ev.ingress else ev.dst_identity,
                              _L4_NUMBERS[kind], port, denied)
    names, logs = attribute(question)
    if ev.ingress:
        target = f.ingress_denied_by if denied else f.ingress_allowed_by
    else:
        target = f.egress_denied_by if denied else f.egress_allowed_by
    target.extend(flow_pb2.Policy(name=p.name, namespace=p.namespace, kind=p.kind, labels=list(p.labels),
                                  revision=p.revision) for p in names)
    f.policy_log.extend(logs)


_UUID_SEED = int.from_bytes(os.urandom(16), "big")
_UUID_COUNTER = itertools.count()
_UUID_MASK = (1 << 128) - 1 ^ (0xF << 76) ^ (0x3 << 62)
_UUID_BITS = (0x4 << 76) | (0x2 << 62)  # version 4, RFC 4122 variant


def flow_uuid() -> str:
    """A version-4-shaped UUID, unique within this process: a random base plus a counter (one
    os.urandom per flow would cost as much as building the rest of the flow)."""
    return uuid_of(next(_UUID_COUNTER))


def next_flow_number() -> int:
    """Reserve the number of a flow whose UUID (``uuid_of``) is written later."""
    return next(_UUID_COUNTER)


def uuid_of(number: int) -> str:
    """The UUID of flow ``number`` (from ``next_flow_number``)."""
    n = ((_UUID_SEED + number) & _UUID_MASK) | _UUID_BITS
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@lru_cache(maxsize=8)
def _emitter(version: str) -> flow_pb2.Emitter:
    return flow_pb2.Emitter(name="Hubble", version=version)


_ENDPOINTS: dict[tuple[EndpointInfo, int], flow_pb2.Endpoint] = {}
_ENDPOINTS_MAX = 4096


def _endpoint(info: EndpointInfo | None, identity: int) -> flow_pb2.Endpoint:
    """The Endpoint message of one end (built once per (info, identity): shared, copy it)."""
    key = (info, identity)
    try:
        cached = _ENDPOINTS.get(key)  # type: ignore[arg-type]
    except TypeError:  # labels given as a list: not hashable, built every time
        return _build_endpoint(info, identity)
    if cached is None:
        if len(_ENDPOINTS) >= _ENDPOINTS_MAX:
            _ENDPOINTS.clear()
        cached = _ENDPOINTS[key] = _build_endpoint(info, identity)  # type: ignore[index]
    return cached


def _build_endpoint(info: EndpointInfo | None, identity: int) -> flow_pb2.Endpoint:
    ep = flow_pb2.Endpoint(identity=identity)
    if info is None:
        return ep
    ep.identity = identity or info.identity
    ep.ID = info.endpoint_id
    ep.namespace = info.namespace
    ep.pod_name = info.pod_name
    ep.cluster_name = info.cluster_name
    ep.labels.extend(sorted(info.labels))
    ep.workloads.extend(flow_pb2.Workload(name=n, kind=k) for n, k in info.workloads)
    return ep


def _direction(ev: DatapathEvent, src: EndpointInfo | None, is_reply: bool | None) -> int:
    """Direction of the connection seen from the local endpoint that produced the event."""
    if ev.ingress is not None:
        return flow_pb2.INGRESS if ev.ingress else flow_pb2.EGRESS
    if ev.endpoint_id and src is not None and src.endpoint_id:
        source_is_local = src.endpoint_id == ev.endpoint_id
    elif ev.message_type == monitor.MSG_TRACE and ev.observation_point == monitor.TRACE_FROM_LXC:
        source_is_local = True
    elif (ev.message_type == monitor.MSG_TRACE and ev.observation_point == monitor.TRACE_TO_LXC) or (
        ev.message_type == monitor.MSG_DROP and ev.endpoint_id
    ):
        source_is_local = False
    else:
        return flow_pb2.TRAFFIC_DIRECTION_UNKNOWN
    if is_reply:
        source_is_local = not source_is_local
    return flow_pb2.EGRESS if source_is_local else flow_pb2.INGRESS


def flow_from_event(
    event: DatapathEvent | Mapping[str, Any],
    lookup: Lookup,
    *,
    uuid_factory: Callable[[], str] | None = None,
    emitter_version: str = "",
    lookup_endpoint: Callable[[int], EndpointInfo | None] | None = None,
    lookup_service: ServiceLookup | None = None,
    attribute_policy: PolicyAttributor | None = None,
) -> flow_pb2.Flow:
    """Decode `event` into a Flow; `lookup(ip)` describes each end of the packet. A packet dropped
    for a spoofed source (monitor.SPOOFED_SOURCE_REASONS) names its real sender, the endpoint
    whose hook dropped it (`lookup_endpoint(endpoint id)`), not the address it claimed.
    `lookup_service(ip, port, protocol)` names the Service of each end (source_service,
    destination_service): a frontend it is, or a backend it translates to. `attribute_policy` names
    the policies behind a policy verdict (``*_allowed_by``/``*_denied_by``, ``policy_log``)."""
    ev = event if isinstance(event, DatapathEvent) else DatapathEvent.from_mapping(event)
    mtype = ev.message_type
    pkt = decode_frame(ev.packet)
    f = flow_pb2.Flow(uuid=(uuid_factory or flow_uuid)(), node_name=ev.node_name, Type=flow_pb2.L3_L4)
    f.time.seconds, f.time.nanos = divmod(ev.timestamp_ns, 1_000_000_000)
    f.emitter.CopyFrom(_emitter(emitter_version))
    if pkt.ethernet is not None:
        f.ethernet.CopyFrom(pkt.ethernet)
    src_info = dst_info = None
    if pkt.ip is not None:
        f.IP.CopyFrom(pkt.ip)
        src_info, dst_info = lookup(pkt.ip.source), lookup(pkt.ip.destination)
    if (mtype == monitor.MSG_DROP and ev.drop_reason in monitor.SPOOFED_SOURCE_REASONS and ev.endpoint_id
            and lookup_endpoint is not None):
        src_info = lookup_endpoint(ev.endpoint_id)
    if pkt.l4 is not None:
        f.l4.CopyFrom(pkt.l4)
        if lookup_service is not None:
            _set_services(f, lookup_service)
    f.source.CopyFrom(_endpoint(src_info, ev.src_identity))
    f.destination.CopyFrom(_endpoint(dst_info, ev.dst_identity))
    if src_info is not None:
        f.source_names.extend(src_info.names)
    if dst_info is not None:
        f.destination_names.extend(dst_info.names)
    if ev.ifindex or ev.ifname:
        f.interface.index = ev.ifindex
        f.interface.name = ev.ifname

    is_reply: bool | None = None
    if mtype == monitor.MSG_TRACE:
        f.event_type.type = mtype
        f.event_type.sub_type = ev.observation_point
        f.verdict = flow_pb2.FORWARDED
        f.trace_observation_point = monitor.observation_point(ev.observation_point)
        if ev.trace_reason is not None:
            f.trace_reason = monitor.trace_reason(ev.trace_reason)
            if f.trace_reason != flow_pb2.TRACE_REASON_UNKNOWN:
                is_reply = f.trace_reason == flow_pb2.REPLY
            f.IP.encrypted = bool(ev.trace_reason & monitor.CT_REASON_ENCRYPT_MASK) and pkt.ip is not None
    elif mtype == monitor.MSG_DROP:
        f.event_type.type = mtype
        f.event_type.sub_type = ev.drop_reason
        f.verdict = flow_pb2.DROPPED
        f.drop_reason = ev.drop_reason
        f.drop_reason_desc = ev.drop_reason
    elif mtype == monitor.MSG_POLICY_VERDICT:
        f.event_type.type = mtype
        f.policy_match_type = ev.policy_match_type
        if ev.action == "deny":
            f.verdict = flow_pb2.DROPPED
            reason = ev.drop_reason or flow_pb2.POLICY_DENIED
            f.drop_reason = reason
            f.drop_reason_desc = reason
        else:
            f.verdict = flow_pb2.AUDIT if ev.action == "audit" else flow_pb2.FORWARDED
            is_reply = False
        if attribute_policy is not None and f.verdict != flow_pb2.AUDIT:
            _set_policies(f, ev, attribute_policy)
    else:
        raise ValueError(f"unsupported monitor message type {mtype}")
    if is_reply is not None:
        f.is_reply.value = is_reply
        f.reply = is_reply
    f.traffic_direction = _direction(ev, src_info, is_reply)
    f.Summary = pkt.summary or summary(pkt.l4, pkt.ip)
    return f
