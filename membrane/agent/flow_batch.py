"""Ring-buffer records to flow-ring entries in batches, building no protobuf for what nobody reads.

Traces, drops and policy verdicts of IPv4 packets (what a connection flood is made of) become
:class:`~membrane.hubble.lazyflow.LazyFlow` entries. At arrival the record is only peeked at (one
``struct`` unpack), and the agent's lookups are asked then, as the eager path asks them (pods and
identities, the Services of both ports, a spoofed sender's endpoint, the policies behind a verdict):
the answers are those of that moment, kept beside the raw record. Within one batch (what one wake-up
of the reader found) each address pair is looked up once.

The ``flow.Flow`` is built by the usual :func:`flow_from_event`, fed those answers, when a reader or
a metric first needs it: from scratch, or as a copy of an earlier flow that differs only in UUID, time
and ports. Metrics count through ``HubbleMetrics.process_keyed`` with a key made of everything the
handlers read, so a flood between the same pods builds one flow per kind of event, not one per event.
IPv6 and unusual frames (VLAN, no IP header) take the eager path.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Callable, Hashable
from typing import Any

from membrane.datapath.maps import events as dpev
from membrane.hubble import monitor
from membrane.hubble.events import DatapathEvent as FlowEvent
from membrane.hubble.events import (
    EndpointInfo,
    PolicyAttributor,
    PolicyQuestion,
    ServiceLookup,
    flow_from_event,
    next_flow_number,
    uuid_of,
)
from membrane.hubble.lazyflow import FlowEntry, LazyFlow
from membrane.hubble.proto.flow import flow_pb2
from membrane.model import datapath_codes as codes

log = logging.getLogger(__name__)

HDR = dpev.EVENT_HEADER_LEN  # the frame starts here in a record
# One peek at a record: (type, ep_id, drop_reason, cap_len) of the header, then of the Ethernet + IPv4
# frame after it (ethertype read little-endian, version/IHL, the two bytes of flags and fragment
# offset, protocol, both addresses).
_PEEK = struct.Struct("<BxHxxB17xI32xHB5xBBxB2x8s")
ETH_P_IP_LE = 0x0008  # ETH_P_IP as _PEEK reads it
_LAZY_KINDS = frozenset((codes.EVENT_TRACE, codes.EVENT_DROP, codes.EVENT_POLICY_VERDICT))
_TRACE, _DROP, _VERDICT = codes.EVENT_TRACE, codes.EVENT_DROP, codes.EVENT_POLICY_VERDICT
_REASON_MASK, _REPLY = ~codes.TRACE_REASON_ENCRYPT_MASK, codes.TRACE_REASON_REPLY
_SPOOFED = monitor.SPOOFED_SOURCE_REASONS
_CAPTURE_LEN = dpev.EVENT_CAPTURE_LEN
_PORTS = struct.Struct("!HH")
_L4_KINDS = {6: "TCP", 17: "UDP", 132: "SCTP"}
_L4_MIN = {6: 14, 17: 4, 132: 4}  # bytes packet.py needs before it decodes the layer
_ADDRS_MAX = 8192
_TEMPLATES_MAX = 8192

ToFlowEvent = Callable[[dpev.DatapathEvent, str], FlowEvent | None]
CountKeyed = Callable[[Hashable, Callable[[], Any], int], None]


class _Ends:
    """Both ends of a packet as the lookups described them, hashed once (a metrics key part)."""

    __slots__ = ("_hash", "dst", "src")

    def __init__(self, src: EndpointInfo | None, dst: EndpointInfo | None) -> None:
        self.src, self.dst = src, dst
        try:
            self._hash = hash((src, dst))
        except TypeError:  # an EndpointInfo with list fields: equal to no other (a key of its own)
            self._hash = id(self)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Ends) and self._hash == other._hash and self.src == other.src and self.dst == other.dst


class BatchDecoder:
    """``decode(records)`` → (flow-ring entries, records that are no event record). ``on_flow``,
    if given, sees every eager flow (and lazy ones, built, when ``count_keyed`` is not given);
    ``count_keyed(key, build, n)`` counts lazy ones, once per key and batch."""

    def __init__(self, node: str, offset_ns: int, to_flow_event: ToFlowEvent,
                 lookup: Callable[[str], EndpointInfo | None], *,
                 on_flow: Callable[[Any], None] | None = None, count_keyed: CountKeyed | None = None,
                 lookup_endpoint: Callable[[int], EndpointInfo | None] | None = None,
                 lookup_service: ServiceLookup | None = None,
                 attribute_policy: PolicyAttributor | None = None) -> None:
        self.node = node
        self.offset_ns = offset_ns
        self._to_flow_event = to_flow_event
        self._lookup = lookup
        self._on_flow = on_flow
        self._count_keyed = count_keyed
        self._lookup_endpoint = lookup_endpoint
        self._lookup_service = lookup_service
        self._attribute_policy = attribute_policy
        self._addrs: dict[bytes, tuple[str, str]] = {}  # 8 address bytes -> their texts
        self._templates: dict[Hashable, flow_pb2.Flow] = {}  # _template_key -> a flow built from it
        self.decode_errors = 0  # events whose flow could not be built
        self.lazy = 0  # entries made lazily

    def decode(self, records: list[bytes]) -> tuple[list[FlowEntry], int]:
        out: list[FlowEntry] = []
        bad = 0
        ends: dict[bytes, tuple[str, str, _Ends]] = {}  # this batch's lookups, by address pair
        counts: dict[Hashable, list[Any]] = {}  # metrics key -> [events, the first entry]
        eager = 0
        for raw in records:
            if len(raw) < HDR:
                bad += 1
                log.warning("datapath event: record of %d bytes, the header alone is %d", len(raw), HDR)
                continue
            entry = self._lazy(raw, ends, counts)
            if entry is None:
                try:
                    entry = self._eager(raw)
                except dpev.EventDecodeError as exc:
                    bad += 1
                    log.warning("datapath event: %s", exc)
                    continue
                if entry is None:
                    continue
                eager += 1
            out.append(entry)
        self.lazy += len(out) - eager
        if self._count_keyed is not None:
            for key, (n, first) in counts.items():
                self._count_keyed(key, first.flow, n)
        return out, bad

    def _eager(self, raw: bytes) -> flow_pb2.Flow | None:
        fev = self._to_flow_event(dpev.decode(raw, self.offset_ns), self.node)
        if fev is None:
            return None
        try:
            flow = flow_from_event(fev, self._lookup, lookup_endpoint=self._lookup_endpoint,
                                   lookup_service=self._lookup_service, attribute_policy=self._attribute_policy)
        except Exception as exc:  # one bad record must not stop the monitor
            self.decode_errors += 1
            log.debug("event not decoded: %s", exc)
            return None
        if self._on_flow is not None:
            self._on_flow(flow)
        return flow

    def _ends(self, addrs: bytes) -> tuple[str, str, _Ends]:
        ips = self._addrs.get(addrs)
        if ips is None:
            if len(self._addrs) >= _ADDRS_MAX:
                self._addrs.clear()
            ips = self._addrs[addrs] = (socket.inet_ntoa(addrs[:4]), socket.inet_ntoa(addrs[4:]))
        return ips[0], ips[1], _Ends(self._lookup(ips[0]), self._lookup(ips[1]))

    def _lazy(self, raw: bytes, batch_ends: dict[bytes, tuple[str, str, _Ends]],
              counts: dict[Hashable, list[Any]]) -> LazyFlow | None:
        """The entry of an IPv4 trace, drop or policy verdict, or None for the eager path."""
        if len(raw) < _PEEK.size:
            return None
        kind, ep_id, drop_reason, cap, ethertype, ihl, frag_hi, frag_lo, proto, addrs = _PEEK.unpack_from(raw)
        if kind not in _LAZY_KINDS or cap < 34 or cap > _CAPTURE_LEN or ethertype != ETH_P_IP_LE:
            return None
        found = batch_ends.get(addrs)
        if found is None:
            found = batch_ends[addrs] = self._ends(addrs)
        src_ip, dst_ip, ends = found
        if (kind == _DROP and drop_reason in _SPOOFED and ep_id
                and self._lookup_endpoint is not None):  # the real sender: the endpoint whose hook dropped it
            ends = _Ends(self._lookup_endpoint(ep_id), ends.dst)
        start, end = HDR + 14 + (ihl & 0x0F) * 4, HDR + cap
        l4len = end - start if end > start else 0
        unfragmented = not (frag_hi & 0x1F or frag_lo)
        services = None
        if self._lookup_service is not None and unfragmented and proto in _L4_KINDS and l4len >= _L4_MIN[proto]:
            sport, dport = _PORTS.unpack_from(raw, start)
            name = _L4_KINDS[proto]
            services = (self._lookup_service(src_ip, sport, name), self._lookup_service(dst_ip, dport, name))
        policies = None
        if kind == _VERDICT:
            policies = self._policies(raw, proto, start, l4len, unfragmented)
        entry = LazyFlow(self._build, raw, (ends, services, policies), next_flow_number())
        if self._count_keyed is None:
            if self._on_flow is not None:
                self._on_flow(entry.flow())
            return entry
        # Everything a metric handler reads: the header but its time, lengths and port (the
        # header's dport is no flow field, and a reply's is the client's ephemeral port: with it
        # every reply would be a key of its own, built), the addresses, the layer 4 bytes that say
        # flags, ICMP type or the destination port (which only counts for flows known not to be
        # replies: port-distribution), both ends as looked up.
        port = kind == _VERDICT or (kind == _TRACE and raw[7] & _REASON_MASK != _REPLY)
        if proto == 6:
            l4key = raw[start + 12 : start + 14] + (raw[start + 2 : start + 4] if port else b"")
        elif proto in _L4_KINDS:
            l4key = raw[start + 2 : start + 4] if port else b""
        else:
            l4key = raw[start : start + 2]
        key = (raw[0:8], raw[16:20], raw[28:40], addrs, proto, unfragmented, l4len if l4len < 14 else 14, l4key,
               ends)
        counted = counts.get(key)
        if counted is None:
            counts[key] = [1, entry]
        else:
            counted[0] += 1
        return entry

    def _policies(self, raw: bytes, proto: int, start: int, l4len: int, unfragmented: bool) -> Any:
        """The policies behind a verdict, asked now as flow_from_event would ask (None: not asked)."""
        direction = raw[36]
        if self._attribute_policy is None or not direction or not unfragmented:
            return None
        if proto in _L4_KINDS:
            if l4len < _L4_MIN[proto]:
                return None
            port = _PORTS.unpack_from(raw, start)[1]
        elif proto in (1, 58) and l4len >= 2:
            port = raw[start]
        else:
            return None
        ingress = direction == dpev.DIRECTION_INGRESS
        peer = int.from_bytes(raw[28:32] if ingress else raw[32:36], "little")
        question = PolicyQuestion(int.from_bytes(raw[2:4], "little"), ingress, peer, proto, port,
                                  raw[38] == codes.POLICY_ACTION_DENY)
        return self._attribute_policy(question)

    def _build(self, entry: LazyFlow) -> flow_pb2.Flow:
        key = self._template_key(entry)
        template = self._templates.get(key) if key is not None else None
        if template is not None:
            return self._from_template(template, entry)
        flow = self._build_new(entry)
        if key is not None and not flow.Summary.startswith("event not decoded"):
            if len(self._templates) >= _TEMPLATES_MAX:
                self._templates.clear()
            copy = self._templates[key] = flow_pb2.Flow()
            copy.CopyFrom(flow)
        return flow

    def _template_key(self, entry: LazyFlow) -> Hashable | None:
        """What a flow is built from but its UUID, time and ports (those of the packet, and the
        header's dport, which no flow field shows); None: build it from scratch."""
        ends, services, policies = entry.answers
        if policies is not None:
            return None
        raw = entry.record
        cap = int.from_bytes(raw[24:28], "little")
        start, end = HDR + 14 + (raw[HDR + 14] & 0x0F) * 4, HDR + cap
        l4len = end - start if end > start else 0
        proto = raw[HDR + 23]
        l4 = raw[start + 12 : start + 14] if proto == 6 else b"" if proto in _L4_KINDS else raw[start : start + 2]
        key = (raw[0:8], raw[16:20], raw[28:40], raw[HDR : HDR + 15], raw[HDR + 20] & 0x1F or raw[HDR + 21], proto,
               raw[HDR + 26 : HDR + 34], l4len if l4len < 14 else 14, l4, ends,
               services)
        return key

    def _from_template(self, template: flow_pb2.Flow, entry: LazyFlow) -> flow_pb2.Flow:
        f = flow_pb2.Flow()
        f.CopyFrom(template)
        f.uuid = uuid_of(entry.seq)
        f.time.seconds, f.time.nanos = divmod(int.from_bytes(entry.record[8:16], "little") + self.offset_ns,
                                              1_000_000_000)
        kind = _L4_KINDS.get(entry.record[HDR + 23])
        if kind is not None and f.l4.HasField(kind):
            start = HDR + 14 + (entry.record[HDR + 14] & 0x0F) * 4
            layer = getattr(f.l4, kind)
            layer.source_port, layer.destination_port = _PORTS.unpack_from(entry.record, start)
        return f

    def _build_new(self, entry: LazyFlow) -> flow_pb2.Flow:
        answers, services, policies = entry.answers
        src = answers.src
        ends = iter((src, answers.dst))
        owners = iter(services or ())  # flow_from_event asks for the source's, then the destination's
        try:
            fev = self._to_flow_event(dpev.decode(entry.record, self.offset_ns), self.node)
            assert fev is not None, "lazy entries are traces, drops and policy verdicts"
            return flow_from_event(
                fev, lambda _ip: next(ends), uuid_factory=lambda: uuid_of(entry.seq),
                lookup_endpoint=lambda _ep: src,
                lookup_service=(lambda _ip, _port, _kind: next(owners)) if services else None,
                attribute_policy=(lambda _q: policies) if policies is not None else None)
        except Exception as exc:  # noqa: BLE001 - a reader must still get a flow for its sequence number
            self.decode_errors += 1
            log.warning("event not decoded: %s", exc)
            return flow_pb2.Flow(uuid=uuid_of(entry.seq), node_name=self.node, Summary=f"event not decoded: {exc}")
