"""L7 flows off the request path: a proxy's record stays raw until someone looks at it.

A proxied request used to become two ``flow.Flow`` protobufs on the spot (endpoints, headers, summary,
UUID) and both ran through every metric handler. Here, per record, only what cannot wait is taken: the
time, the flow number (its UUID), and the two ends as the agent's lookup answers them — once per
connection, so later answers cannot change an old flow. The record goes into the flow ring as a
:class:`~membrane.hubble.lazyflow.LazyFlow` (built the first time a reader reaches it: observe, the
relay, the filters and the real hubble CLI see the same flow as before), and HTTP records are counted
through ``HubbleMetrics.process_l7_keyed`` with a key made of everything the handlers read
(both ends, type, verdict, direction, destination port, method, protocol, status code), so only the
first record of a key is built for the metrics; each record's own latency still goes into the
duration histograms. DNS, Kafka and TLS records are rarer; they are built for the metrics at once.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Callable, Hashable
from typing import Any

from membrane.hubble.events import EndpointInfo, next_flow_number, uuid_of
from membrane.hubble.l7flow import EndpointCache, L7Record, Lookup, l7_flow
from membrane.hubble.lazyflow import LazyFlow
from membrane.hubble.proto.flow import flow_pb2

log = logging.getLogger(__name__)

# (the flow ring entry, the metrics key or None = build and count it whole, the latency in seconds)
Sink = Callable[[LazyFlow, "Hashable | None", float], None]
ENDS_MAX = 4096  # pairs of ends remembered for sharing metric keys across connections


class L7Flows:
    """The node's L7 flow path: ``connection()`` is the ``emit`` of one proxied connection."""

    def __init__(self, node: str, lookup: Lookup, sink: Sink) -> None:
        self.node = node
        self.lookup = lookup
        self.sink = sink
        self._ends: dict[Hashable, int] = {}
        self._ends_numbers = itertools.count()

    def connection(self) -> ConnectionFlows:
        return ConnectionFlows(self)

    def ends_number(self, ends: tuple[Any, ...]) -> int:
        """A number standing for a pair of ends as looked up (equal ends, equal number); never reused."""
        try:
            number = self._ends.get(ends)
        except TypeError:  # an answer that does not hash (lists in it): a number of its own
            return next(self._ends_numbers)
        if number is None:
            if len(self._ends) >= ENDS_MAX:
                self._ends.clear()
            number = self._ends[ends] = next(self._ends_numbers)
        return number

    def build(self, entry: LazyFlow) -> flow_pb2.Flow:
        rec: L7Record = entry.record  # type: ignore[assignment]
        conn, timestamp_ns = entry.answers
        if not rec.timestamp_ns:
            rec = dataclasses.replace(rec, timestamp_ns=timestamp_ns)
        seq = entry.seq
        try:
            return l7_flow(rec, conn.infos.get, self.node, uuid_factory=lambda: uuid_of(seq),
                           endpoints=conn.endpoints)
        except Exception as exc:  # a reader must still get a flow: the bare facts and why
            log.warning("L7 flow %d not built: %s", seq, exc)
            f = flow_pb2.Flow(uuid=uuid_of(seq), node_name=self.node, Type=flow_pb2.L7,
                              Summary=f"{rec.kind} {rec.type.lower()} not decoded: {exc}")
            f.time.FromNanoseconds(timestamp_ns)
            return f


class ConnectionFlows:
    """``ctx.emit`` of one proxied connection (its ends do not change): the ends are looked up on
    its first record; the endpoint messages are built once, when its first flow is."""

    __slots__ = ("flows", "infos", "endpoints", "_keys")

    def __init__(self, flows: L7Flows) -> None:
        self.flows = flows
        self.infos: dict[str, EndpointInfo | None] = {}
        self.endpoints: EndpointCache = {}
        self._keys: dict[tuple[str, str, int, int], int] = {}  # (src ip, dst ip, identities) -> ends number

    def __call__(self, rec: L7Record) -> None:
        try:
            self._emit(rec)
        except Exception as exc:  # the proxied request goes on without its flow
            log.warning("L7 flow not recorded: %s", exc)

    def _emit(self, rec: L7Record) -> None:
        ts = rec.timestamp_ns or time.time_ns()
        sip, dip = rec.src[0], rec.dst[0]
        ends = self._keys.get((sip, dip, rec.src_identity, rec.dst_identity))
        if ends is None:
            infos, lookup = self.infos, self.flows.lookup
            for ip in (sip, dip):
                if ip not in infos:
                    infos[ip] = lookup(ip)
            ends = self._keys[(sip, dip, rec.src_identity, rec.dst_identity)] = self.flows.ends_number(
                (sip, dip, rec.src_identity, rec.dst_identity, infos[sip], infos[dip]))
        flows = self.flows
        entry = LazyFlow(flows.build, rec, (self, ts), next_flow_number())  # type: ignore[arg-type]
        key = None
        if rec.kind == "http":
            h = rec.http
            key = (ends, rec.type, rec.verdict, rec.ingress, rec.dst[1], h.get("method", ""),
                   h.get("protocol", "HTTP/1.1"), h.get("code", 0))
        flows.sink(entry, key, rec.latency_ns / 1e9)
