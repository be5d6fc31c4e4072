"""The Hubble UI's service map: flows folded into nodes (one per workload, Service, world, host …) and
edges (who talks to whom on which port, with how many flows forwarded and dropped).

An end of a flow becomes a node by the first of: its pod's workload (or the pod, without one), its
Service (``namespace/name``), its reserved identity (``world``, ``host``, ``remote-node`` …), its IP.
Reply flows count on the edge of the connection they answer (originator → responder), so a request and
its answer make one edge. An edge is ``dropped`` once any of its flows was dropped, else ``forwarded``.
With a namespace, only flows with an end in it are drawn (their other ends too, as Hubble UI does).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from membrane.hubble import monitor
from membrane.hubble.proto.flow import flow_pb2
from membrane.hubble.render import table_columns


@dataclass(frozen=True)
class MapNode:
    id: str
    label: str
    kind: str  # workload | service | reserved | ip
    namespace: str = ""


@dataclass
class MapEdge:
    source: str
    target: str
    port: str  # "TCP/80", "ICMPv4", …
    forwarded: int = 0
    dropped: int = 0
    reasons: set[str] = field(default_factory=set)

    @property
    def verdict(self) -> str:
        return "dropped" if self.dropped else "forwarded"


def endpoint_node(ep: flow_pb2.Endpoint, svc: flow_pb2.Service, ip: str) -> MapNode:
    if ep.pod_name:
        name = ep.workloads[0].name if ep.workloads else ep.pod_name
        return MapNode(f"{ep.namespace}/{name}", name, "workload", ep.namespace)
    if svc.name:
        return MapNode(f"{svc.namespace}/{svc.name}", svc.name, "service", svc.namespace)
    reserved = monitor.RESERVED_IDENTITY_NAMES.get(ep.identity)
    if reserved:
        return MapNode(reserved, reserved, "reserved")
    return MapNode(ip or "unknown", ip or "unknown", "ip")


def _port(flow: flow_pb2.Flow, reverse: bool) -> str:
    kind = flow.l4.WhichOneof("protocol")
    if kind in ("TCP", "UDP", "SCTP"):
        layer = getattr(flow.l4, kind)
        return f"{kind}/{layer.source_port if reverse else layer.destination_port}"
    return kind or ""


class ServiceMap:
    """Nodes and edges folded from flows; ``to_dict`` is what the UI draws."""

    def __init__(self, namespace: str = "") -> None:
        self.namespace = namespace
        self.nodes: dict[str, MapNode] = {}
        self.edges: dict[tuple[str, str, str], MapEdge] = {}

    def add(self, flow: flow_pb2.Flow) -> None:
        if self.namespace and self.namespace not in (flow.source.namespace, flow.destination.namespace):
            return
        src = endpoint_node(flow.source, flow.source_service, flow.IP.source)
        dst = endpoint_node(flow.destination, flow.destination_service, flow.IP.destination)
        reverse = flow.HasField("is_reply") and flow.is_reply.value
        if reverse:
            src, dst = dst, src
        if src.id == dst.id:
            return
        self.nodes.setdefault(src.id, src)
        self.nodes.setdefault(dst.id, dst)
        key = (src.id, dst.id, _port(flow, reverse))
        edge = self.edges.get(key)
        if edge is None:
            edge = self.edges[key] = MapEdge(*key)
        if flow.verdict == flow_pb2.DROPPED:
            edge.dropped += 1
            if flow.drop_reason_desc:
                edge.reasons.add(flow_pb2.DropReason.Name(flow.drop_reason_desc))
        else:
            edge.forwarded += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": [asdict(n) for n in sorted(self.nodes.values(), key=lambda n: n.id)],
            "edges": [{"source": e.source, "target": e.target, "port": e.port, "verdict": e.verdict,
                       "forwarded": e.forwarded, "dropped": e.dropped, "reasons": sorted(e.reasons)}
                      for _, e in sorted(self.edges.items())],
        }


def flow_row(flow: flow_pb2.Flow) -> dict[str, str]:
    """One row of the UI's flow table (the columns of ``hubble observe -o table``)."""
    time, src, dst, kind, verdict, summary = table_columns(flow)
    return {"time": time, "node": flow.node_name, "source": src, "destination": dst, "type": kind,
            "verdict": verdict, "summary": summary,
            "verdict_class": "dropped" if flow.verdict == flow_pb2.DROPPED else "forwarded"}
