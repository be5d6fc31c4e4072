"""The per-node Observer server: GetFlows (filters, number/first/last, since/until, follow with
a bounded wait, lost events), GetAgentEvents, GetDebugEvents (none yet: the datapath emits no debug
events), ServerStatus, GetNodes, GetNamespaces, gRPC health and, with a peer source, peer.Peer."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from membrane.hubble.filters import compile_filters
from membrane.hubble.proto.flow import flow_pb2
from membrane.hubble.proto.observer import observer_pb2, observer_pb2_grpc
from membrane.hubble.proto.peer import peer_pb2_grpc
from membrane.hubble.proto.relay import relay_pb2
from membrane.hubble.render import response_for
from membrane.hubble.ring import FlowRing
from membrane.hubbleserver.listen import build_server, mark_serving
from membrane.hubbleserver.peer import PeerServicer, PeerSource

RingProvider = Callable[[], FlowRing] | FlowRing
LostCounter = Callable[[], int]  # events the datapath could not write (its ring buffer was full)
VERSION = "membrane/0.1.0"
SERVER_PORT = 4244  # hubble-listen-address ":4244", where Hubble's relay dials every node


def _ts_ns(ts: object, present: bool) -> int | None:
    return ts.ToNanoseconds() if present else None  # type: ignore[attr-defined]


class ObserverServicer(observer_pb2_grpc.ObserverServicer):
    """Serves one node's flow ring."""

    def __init__(
        self,
        ring_provider: RingProvider,
        node_name: str,
        *,
        address: str = "",
        follow_wait: float = 0.2,
        version: str = VERSION,
        perf_lost: LostCounter | None = None,
        agent_events: FlowRing | None = None,
        on_lost: Callable[[str, int], None] | None = None,
    ) -> None:
        self._ring_provider = ring_provider
        self._perf_lost = perf_lost
        self._on_lost = on_lost  # (metric source, count) for flows a follower missed
        self.agent_events = agent_events if agent_events is not None else FlowRing(1)
        self.node_name = node_name
        self.address = address
        self.version = version
        self._follow_wait = follow_wait
        self._started_ns = time.monotonic_ns()
        self.stopping = threading.Event()

    def ring(self) -> FlowRing:
        provider = self._ring_provider
        return provider if isinstance(provider, FlowRing) else provider()

    def GetFlows(self, request: observer_pb2.GetFlowsRequest, context: grpc.ServicerContext) -> Iterator:
        ring = self.ring()
        try:
            match = compile_filters(request.whitelist, request.blacklist)
        except ValueError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        since = _ts_ns(request.since, request.HasField("since"))
        until = _ts_ns(request.until, request.HasField("until"))
        number = request.number
        perf_lost = self._perf_lost() if self._perf_lost is not None else 0
        if request.follow and not number and since is None:
            flows, cursor = [], ring.snapshot()[1]  # follow only: just new flows
        else:
            flows, cursor = ring.query(
                number, first=request.first, since_ns=since, until_ns=until, predicate=match
            )
        for f in flows:
            yield response_for(f)
        if not request.follow:
            return
        while context.is_active() and not self.stopping.is_set():
            if self._perf_lost is not None:
                now_lost = self._perf_lost()
                if now_lost > perf_lost:
                    yield self._lost(flow_pb2.PERF_EVENT_RING_BUFFER, now_lost - perf_lost)
                perf_lost = now_lost
            if not ring.wait(cursor, self._follow_wait):
                continue
            result = ring.read_after(cursor)
            cursor = result.cursor
            if result.lost:
                if self._on_lost is not None:
                    self._on_lost("hubble_ring_buffer", result.lost)
                yield self._lost(flow_pb2.HUBBLE_RING_BUFFER, result.lost)
            for f in result.flows:
                ns = f.time.ToNanoseconds()
                if (since is None or ns >= since) and (until is None or ns <= until) and match(f):
                    yield response_for(f)

    def _lost(self, source: int, count: int) -> observer_pb2.GetFlowsResponse:
        lost = observer_pb2.GetFlowsResponse(node_name=self.node_name)
        lost.lost_events.source = source  # type: ignore[assignment]
        lost.lost_events.num_events_lost = count
        lost.time.GetCurrentTime()
        return lost

    def GetAgentEvents(self, request: observer_pb2.GetAgentEventsRequest, context: grpc.ServicerContext) -> Iterator:
        yield from stream_ring(self.agent_events, request, context, self._follow_wait, self.stopping)

    def GetDebugEvents(self, request: observer_pb2.GetDebugEventsRequest, context: grpc.ServicerContext) -> Iterator:
        yield from stream_ring(FlowRing(1), request, context, self._follow_wait, self.stopping)

    def status(self) -> observer_pb2.ServerStatusResponse:
        ring = self.ring()
        flows, _ = ring.snapshot()
        now_ns = time.time_ns()
        recent = sum(1 for f in flows if now_ns - f.time.ToNanoseconds() <= 60_000_000_000)
        resp = observer_pb2.ServerStatusResponse(
            num_flows=len(flows),
            max_flows=ring.capacity,
            seen_flows=ring.seen,
            uptime_ns=time.monotonic_ns() - self._started_ns,
            version=self.version,
            flows_rate=recent / 60.0,
        )
        resp.num_connected_nodes.value = 1
        resp.num_unavailable_nodes.value = 0
        return resp

    def ServerStatus(self, request: observer_pb2.ServerStatusRequest, context: grpc.ServicerContext):
        return self.status()

    def GetNodes(self, request: observer_pb2.GetNodesRequest, context: grpc.ServicerContext):
        st = self.status()
        node = observer_pb2.Node(
            name=self.node_name,
            version=self.version,
            address=self.address,
            state=relay_pb2.NODE_CONNECTED,
            uptime_ns=st.uptime_ns,
            num_flows=st.num_flows,
            max_flows=st.max_flows,
            seen_flows=st.seen_flows,
        )
        return observer_pb2.GetNodesResponse(nodes=[node])

    def GetNamespaces(self, request: observer_pb2.GetNamespacesRequest, context: grpc.ServicerContext):
        flows, _ = self.ring().snapshot()
        names = {ep.namespace for f in flows for ep in (f.source, f.destination) if ep.namespace}
        return observer_pb2.GetNamespacesResponse(
            namespaces=[observer_pb2.Namespace(namespace=n) for n in sorted(names)]
        )


def stream_ring(ring: FlowRing, request: Any, context: grpc.ServicerContext, wait: float,
                stopping: threading.Event) -> Iterator:
    """The items of a ring of timed responses for a Get*EventsRequest: the first/last ``number``
    (0 = all) inside since/until, then with ``follow`` the new ones until the call ends."""
    since = _ts_ns(request.since, request.HasField("since"))
    until = _ts_ns(request.until, request.HasField("until"))
    if request.follow and not request.number and since is None:
        items, cursor = [], ring.snapshot()[1]
    else:
        items, cursor = ring.query(request.number, first=request.first, since_ns=since, until_ns=until)
    yield from items
    while request.follow and context.is_active() and not stopping.is_set():
        if ring.wait(cursor, wait):
            result = ring.read_after(cursor)
            cursor = result.cursor
            yield from result.flows


class ObserverServer:
    """Hubble's Observer API for one node on a unix socket and, optionally, a TCP address (TLS-only
    when ``tcp_credentials`` are given)."""

    def __init__(
        self,
        ring_provider: RingProvider,
        node_name: str,
        unix_socket_path: str | os.PathLike[str] | None,
        tcp_addr: str | None = None,
        *,
        follow_wait: float = 0.2,
        max_workers: int = 16,
        tcp_credentials: grpc.ServerCredentials | None = None,
        address: str = "",
        perf_lost: LostCounter | None = None,
        agent_events: FlowRing | None = None,
        peers: PeerSource | None = None,
        on_lost: Callable[[str, int], None] | None = None,
    ) -> None:
        self.servicer = ObserverServicer(
            ring_provider, node_name, address=address or tcp_addr or str(unix_socket_path or ""),
            follow_wait=follow_wait, perf_lost=perf_lost, agent_events=agent_events, on_lost=on_lost,
        )
        self._server, self._health, self.tcp_port = build_server(
            unix_socket_path, tcp_addr, max_workers, tcp_credentials)
        observer_pb2_grpc.add_ObserverServicer_to_server(self.servicer, self._server)
        self.peer_servicer = PeerServicer(peers, follow_wait=follow_wait) if peers is not None else None
        if self.peer_servicer is not None:
            peer_pb2_grpc.add_PeerServicer_to_server(self.peer_servicer, self._server)

    def start(self) -> None:
        self._server.start()
        mark_serving(self._health)

    def stop(self, grace: float | None = 1.0) -> None:
        self.servicer.stopping.set()
        if self.peer_servicer is not None:
            self.peer_servicer.stopping.set()
        self._health.enter_graceful_shutdown()
        self._server.stop(grace).wait()
