"""L7 flow records from the proxies (HTTP, DNS, Kafka) as Hubble flows (Type L7, event type 129).

The proxies describe each request and response as an :class:`L7Record`; :func:`l7_flow` turns one
into a ``flow.Flow`` the way Hubble's "seven" parser does: ``l7.type`` REQUEST/RESPONSE, verdict
FORWARDED or DROPPED, ``l7.http``/``l7.dns``/``l7.kafka``, and the compact summary text
(``HTTP/1.1 PUT http://deathstar/v1/exhaust-port``, ``HTTP/1.1 200 3ms (GET http://…)``).
"""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from membrane.hubble import monitor
from membrane.hubble.events import EndpointInfo
from membrane.hubble.proto.flow import flow_pb2

REQUEST, RESPONSE = "REQUEST", "RESPONSE"
FORWARDED, DROPPED = "FORWARDED", "DROPPED"


@dataclass(frozen=True)
class L7Record:
    """One request or response a proxy saw. ``src``/``dst`` are the connection's ends as the client
    opened it (a response keeps them; Hubble prints it reversed, ``is_reply``)."""

    kind: str  # http | dns | kafka | tls
    type: str  # REQUEST | RESPONSE
    verdict: str  # FORWARDED | DROPPED
    src: tuple[str, int]
    dst: tuple[str, int]
    src_identity: int
    dst_identity: int
    ingress: bool  # the redirect is the destination endpoint's (ingress) or the source's (egress)
    latency_ns: int = 0
    timestamp_ns: int = 0
    http: Mapping[str, Any] = field(default_factory=dict)  # code, method, url, protocol, headers [(k, v)]
    dns: Mapping[str, Any] = field(default_factory=dict)  # query, ips, ttl, cnames, rcode, qtypes, rrtypes
    kafka: Mapping[str, Any] = field(default_factory=dict)  # error_code, api_version, api_key, correlation_id, topic
    summary: str = ""  # set by kinds whose summary is not built here


Lookup = Callable[[str], EndpointInfo | None]


def _endpoint(info: EndpointInfo | None, identity: int) -> flow_pb2.Endpoint:
    ep = flow_pb2.Endpoint(identity=identity)
    if info is not None:
        ep.identity = identity or info.identity
        ep.namespace = info.namespace
        ep.pod_name = info.pod_name
        ep.cluster_name = info.cluster_name
        ep.labels.extend(info.labels)
        for name, kind in info.workloads:
            ep.workloads.add(name=name, kind=kind)
    return ep


def http_summary(rec: L7Record) -> str:
    h = rec.http
    proto = h.get("protocol", "HTTP/1.1")
    if rec.type == REQUEST:
        return f"{proto} {h.get('method', '')} {h.get('url', '')}"
    ms = rec.latency_ns // 1_000_000
    return f"{proto} {h.get('code', 0)} {ms}ms ({h.get('method', '')} {h.get('url', '')})"


EndpointCache = dict[tuple[str, int], flow_pb2.Endpoint]


def _cached_endpoint(cache: EndpointCache | None, lookup: Lookup, ip: str, identity: int) -> flow_pb2.Endpoint:
    if cache is None:
        return _endpoint(lookup(ip), identity)
    ep = cache.get((ip, identity))
    if ep is None:
        ep = cache[(ip, identity)] = _endpoint(lookup(ip), identity)
    return ep


def l7_flow(rec: L7Record, lookup: Lookup, node: str, *, uuid_factory: Callable[[], str] = lambda: str(
        uuidlib.uuid4()), endpoints: EndpointCache | None = None) -> flow_pb2.Flow:
    """``endpoints``: a cache of the source/destination messages by (ip, identity) a caller keeps for
    as long as they hold (the proxies: one connection), so a flow does not look them up each time."""
    f = flow_pb2.Flow(uuid=uuid_factory(), node_name=node, Type=flow_pb2.L7)
    f.time.FromNanoseconds(rec.timestamp_ns or time.time_ns())
    f.emitter.name = "Hubble"
    f.event_type.type = monitor.MSG_ACCESS_LOG
    f.verdict = flow_pb2.FORWARDED if rec.verdict == FORWARDED else flow_pb2.DROPPED
    reply = rec.type == RESPONSE
    # A response travels from the server: its source is the connection's destination.
    (sip, sport), (dip, dport) = (rec.dst, rec.src) if reply else (rec.src, rec.dst)
    sid, did = (rec.dst_identity, rec.src_identity) if reply else (rec.src_identity, rec.dst_identity)
    f.IP.source, f.IP.destination, f.IP.ipVersion = sip, dip, flow_pb2.IPv4
    if rec.kind == "dns" and rec.dst[1] == 53 and rec.dns.get("udp", True):
        f.l4.UDP.source_port, f.l4.UDP.destination_port = sport, dport
    else:
        f.l4.TCP.source_port, f.l4.TCP.destination_port = sport, dport
    f.source.CopyFrom(_cached_endpoint(endpoints, lookup, sip, sid))
    f.destination.CopyFrom(_cached_endpoint(endpoints, lookup, dip, did))
    f.is_reply.value = reply
    f.reply = reply
    f.traffic_direction = flow_pb2.INGRESS if rec.ingress else flow_pb2.EGRESS
    f.l7.type = flow_pb2.RESPONSE if reply else flow_pb2.REQUEST
    f.l7.latency_ns = rec.latency_ns
    if rec.kind == "http":
        h = rec.http
        f.l7.http.code = int(h.get("code", 0))
        f.l7.http.method = h.get("method", "")
        f.l7.http.url = h.get("url", "")
        f.l7.http.protocol = h.get("protocol", "HTTP/1.1")
        for k, v in h.get("headers", ()):
            f.l7.http.headers.add(key=k, value=v)
        f.Summary = rec.summary or http_summary(rec)
    elif rec.kind == "dns":
        d = rec.dns
        f.l7.dns.query = d.get("query", "")
        f.l7.dns.ips.extend(d.get("ips", ()))
        f.l7.dns.ttl = int(d.get("ttl", 0))
        f.l7.dns.cnames.extend(d.get("cnames", ()))
        f.l7.dns.observation_source = "proxy"
        f.l7.dns.rcode = int(d.get("rcode", 0))
        f.l7.dns.qtypes.extend(d.get("qtypes", ()))
        f.l7.dns.rrtypes.extend(d.get("rrtypes", ()))
        f.Summary = rec.summary
    elif rec.kind == "kafka":
        k = rec.kafka
        f.l7.kafka.error_code = int(k.get("error_code", 0))
        f.l7.kafka.api_version = int(k.get("api_version", 0))
        f.l7.kafka.api_key = str(k.get("api_key", ""))
        f.l7.kafka.correlation_id = int(k.get("correlation_id", 0))
        f.l7.kafka.topic = str(k.get("topic", ""))
        f.Summary = rec.summary
    else:  # kinds without a record of their own (tls: the SNI proxy's verdicts)
        f.Summary = rec.summary
    return f


def l7_type_text(flow: flow_pb2.Flow) -> str:
    """The compact `<type>` column of an L7 flow: http-request, dns-response proxy, kafka-request …"""
    record = flow.l7.WhichOneof("record") if flow.HasField("l7") else None
    way = "request" if flow.l7.type == flow_pb2.REQUEST else "response"
    if record == "dns":
        return f"dns-{way} proxy"
    if record in ("http", "kafka"):
        return f"{record}-{way}"
    return f"l7-{way}"


