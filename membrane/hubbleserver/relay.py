"""Hubble relay: one Observer API over every node's server. GetFlows, GetAgentEvents and
GetDebugEvents merge the nodes' streams by time, ServerStatus sums them, GetNodes lists each node
(with the address the relay dials it at). The relay also serves ``peer.Peer/Notify`` over its peers.

Peers are unix socket paths (local, plaintext) or ``host:port`` targets; with a :class:`ClientTLS`
the relay dials TCP peers with mutual TLS, verifying each as ``<node>.<cluster>.hubble-grpc.cilium.io``
like Cilium's relay.
"""

from __future__ import annotations

import heapq
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import grpc

from membrane.hubble.proto.observer import observer_pb2, observer_pb2_grpc
from membrane.hubble.proto.peer import peer_pb2_grpc
from membrane.hubble.proto.relay import relay_pb2
from membrane.hubbleserver.listen import build_server, mark_serving, unix_target
from membrane.hubbleserver.peer import PeerInfo, PeerServicer, PeerSource
from membrane.hubbleserver.tls import ClientTLS

VERSION = "membrane-relay/0.1.0"


def _time_ns(resp: Any) -> int:
    return resp.time.ToNanoseconds()


@dataclass(frozen=True)
class Peer:
    """One node's Hubble server: ``name`` (reported when unavailable), ``target`` (a socket path or
    ``host:port``) and the TLS name to verify it by (empty: the target's host)."""

    name: str
    target: str
    server_name: str = ""


# A restarted agent is found again within seconds, not after gRPC's default backoff of up to 120 s.
_CHANNEL_OPTIONS = [("grpc.max_reconnect_backoff_ms", 5000)]


def _channel(peer: Peer, tls: ClientTLS | None) -> grpc.Channel:
    if tls is None or peer.target.startswith(("/", "unix:")):
        return grpc.insecure_channel(unix_target(peer.target), options=_CHANNEL_OPTIONS)
    return replace(tls, server_name=peer.server_name or tls.server_name).channel(peer.target, _CHANNEL_OPTIONS)


class RelayServicer(observer_pb2_grpc.ObserverServicer):
    """Fans each call out to the peers (unix socket paths or gRPC targets)."""

    def __init__(self, peers: Sequence[str | Peer], *, timeout: float = 5.0, follow_wait: float = 0.2,
                 tls: ClientTLS | None = None) -> None:
        self.peers = [p if isinstance(p, Peer) else Peer(p, p) for p in peers]
        self._timeout = timeout
        self._follow_wait = follow_wait
        self._channels = {p.name: _channel(p, tls) for p in self.peers}
        self._stubs = {name: observer_pb2_grpc.ObserverStub(c) for name, c in self._channels.items()}
        self._tls = tls
        self.stopping = threading.Event()

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def _unavailable(self, peers: Sequence[str]) -> observer_pb2.GetFlowsResponse:
        resp = observer_pb2.GetFlowsResponse()
        resp.node_status.state_change = relay_pb2.NODE_UNAVAILABLE
        resp.node_status.node_names.extend(peers)
        resp.time.GetCurrentTime()
        return resp

    def GetFlows(self, request: observer_pb2.GetFlowsRequest, context: grpc.ServicerContext) -> Iterator:
        yield from self._merged(lambda stub, **kw: stub.GetFlows(request, **kw), request, context, True)

    def GetAgentEvents(self, request: observer_pb2.GetAgentEventsRequest, context: grpc.ServicerContext) -> Iterator:
        yield from self._merged(lambda stub, **kw: stub.GetAgentEvents(request, **kw), request, context, False)

    def GetDebugEvents(self, request: observer_pb2.GetDebugEventsRequest, context: grpc.ServicerContext) -> Iterator:
        yield from self._merged(lambda stub, **kw: stub.GetDebugEvents(request, **kw), request, context, False)

    def _merged(self, call: Callable[..., Any], request: Any, context: grpc.ServicerContext,
                node_status: bool) -> Iterator:
        """Every peer's stream of ``call``, merged by time and trimmed to ``request.number``; with
        ``follow`` interleaved as they come. ``node_status``: report unavailable peers in the stream."""
        if request.follow:
            yield from self._follow(call, context, node_status)
            return
        per_node: list[list[Any]] = []
        failed: list[str] = []
        for peer, stub in self._stubs.items():
            try:
                per_node.append(list(call(stub, timeout=self._timeout)))
            except grpc.RpcError:
                failed.append(peer)
        if failed and node_status:
            yield self._unavailable(failed)
        merged = list(heapq.merge(*per_node, key=_time_ns))
        if request.number:
            merged = merged[: request.number] if request.first else merged[-request.number :]
        yield from merged

    def _follow(self, call: Callable[..., Any], context: grpc.ServicerContext, node_status: bool) -> Iterator:
        out: queue.Queue[Any] = queue.Queue()
        calls = []

        def pump(peer: str, stream: grpc.Call) -> None:
            try:
                for resp in stream:
                    out.put(resp)
            except grpc.RpcError:
                if not self.stopping.is_set() and context.is_active() and node_status:
                    out.put(peer)

        for peer, stub in self._stubs.items():
            stream = call(stub)
            calls.append(stream)
            threading.Thread(target=pump, args=(peer, stream), daemon=True, name=f"relay-{peer}").start()
        try:
            while context.is_active() and not self.stopping.is_set():
                try:
                    item = out.get(timeout=self._follow_wait)
                except queue.Empty:
                    continue
                yield self._unavailable([item]) if isinstance(item, str) else item
        finally:
            for stream in calls:
                stream.cancel()

    def _statuses(self) -> tuple[list[tuple[str, observer_pb2.ServerStatusResponse]], list[str]]:
        ok, failed = [], []
        for peer, stub in self._stubs.items():
            try:
                ok.append(
                    (peer, stub.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=self._timeout))
                )
            except grpc.RpcError:
                failed.append(peer)
        return ok, failed

    def ServerStatus(self, request: observer_pb2.ServerStatusRequest, context: grpc.ServicerContext):
        ok, failed = self._statuses()
        resp = observer_pb2.ServerStatusResponse(version=VERSION, unavailable_nodes=failed)
        for _, st in ok:
            resp.num_flows += st.num_flows
            resp.max_flows += st.max_flows
            resp.seen_flows += st.seen_flows
            resp.uptime_ns = max(resp.uptime_ns, st.uptime_ns)
            resp.flows_rate += st.flows_rate
        resp.num_connected_nodes.value = len(ok)
        resp.num_unavailable_nodes.value = len(failed)
        return resp

    def GetNodes(self, request: observer_pb2.GetNodesRequest, context: grpc.ServicerContext):
        resp = observer_pb2.GetNodesResponse()
        for peer in self.peers:
            try:
                nodes = self._stubs[peer.name].GetNodes(request, timeout=self._timeout).nodes
            except grpc.RpcError:
                nodes = [observer_pb2.Node(name=peer.name, state=relay_pb2.NODE_UNAVAILABLE)]
            for node in nodes:
                node.address = peer.target  # where the relay reaches it, as Hubble's relay reports
                if self._tls is not None and not peer.target.startswith(("/", "unix:")):
                    node.tls.enabled = True
                    node.tls.server_name = peer.server_name or self._tls.server_name
                resp.nodes.append(node)
        return resp

    def GetNamespaces(self, request: observer_pb2.GetNamespacesRequest, context: grpc.ServicerContext):
        seen: dict[tuple[str, str], observer_pb2.Namespace] = {}
        for stub in self._stubs.values():
            try:
                for ns in stub.GetNamespaces(request, timeout=self._timeout).namespaces:
                    seen[(ns.cluster, ns.namespace)] = ns
            except grpc.RpcError:
                continue
        return observer_pb2.GetNamespacesResponse(namespaces=[seen[k] for k in sorted(seen)])


class Relay:
    """Hubble relay over `peers` (node servers), served on its own socket/port; ``tls`` is the relay's
    client side towards TCP peers."""

    def __init__(
        self,
        peers: Sequence[str | Peer],
        unix_socket_path: str | os.PathLike[str] | None = None,
        tcp_addr: str | None = None,
        *,
        timeout: float = 5.0,
        follow_wait: float = 0.2,
        max_workers: int = 16,
        tls: ClientTLS | None = None,
    ) -> None:
        self.servicer = RelayServicer(peers, timeout=timeout, follow_wait=follow_wait, tls=tls)
        self._server, self._health, self.tcp_port = build_server(unix_socket_path, tcp_addr, max_workers)
        observer_pb2_grpc.add_ObserverServicer_to_server(self.servicer, self._server)
        table = {p.name: PeerInfo(p.target, p.server_name if tls is not None else "") for p in self.servicer.peers}
        self.peer_servicer = PeerServicer(PeerSource(table), follow_wait=follow_wait)
        peer_pb2_grpc.add_PeerServicer_to_server(self.peer_servicer, self._server)

    def start(self) -> None:
        self._server.start()
        mark_serving(self._health)

    def stop(self, grace: float | None = 1.0) -> None:
        self.servicer.stopping.set()
        self.peer_servicer.stopping.set()
        self._health.enter_graceful_shutdown()
        self._server.stop(grace).wait()
        self.servicer.close()
