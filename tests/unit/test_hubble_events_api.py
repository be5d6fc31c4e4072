"""GetAgentEvents, lost events, peer.Peer/Notify and the relay's merge of them: in-process gRPC over
unix sockets, plus the pure agent-event builders."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from membrane.hubble import agent_events as ae
from membrane.hubble.proto.flow import flow_pb2
from membrane.hubble.proto.observer import observer_pb2, observer_pb2_grpc
from membrane.hubble.proto.peer import peer_pb2, peer_pb2_grpc
from membrane.hubble.ring import FlowRing
from membrane.hubbleserver.observer import ObserverServer
from membrane.hubbleserver.peer import PeerInfo, PeerSource, changes
from membrane.hubbleserver.relay import Peer, Relay
from tests.unit.test_hubble_server import TIMEOUT, make_flow, sockdir  # noqa: F401 - fixture

T0 = 1_700_000_000_000_000_000
POD = {"metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}}}


def test_endpoint_and_policy_events_carry_names_and_labels() -> None:
    created = ae.endpoint_event(POD, created=True, endpoint_id=42)
    assert created.type == flow_pb2.ENDPOINT_CREATED
    assert (created.endpoint_update.id, created.endpoint_update.pod_name, created.endpoint_update.namespace) == (
        42, "web-1", "shop")
    assert list(created.endpoint_update.labels) == ["k8s:app=web", "k8s:io.kubernetes.pod.namespace=shop"]
    assert ae.endpoint_event(POD, created=False).type == flow_pb2.ENDPOINT_DELETED
    policy = {"kind": "CiliumNetworkPolicy", "metadata": {"name": "deny", "namespace": "shop"}, "spec": {"a": 1}}
    upd = ae.policy_event(policy, deleted=False, revision=77)
    assert upd.type == flow_pb2.POLICY_UPDATED and upd.policy_update.revision == 77
    assert upd.policy_update.rule_count == 1
    assert "k8s:io.cilium.k8s.policy.name=deny" in upd.policy_update.labels
    assert "k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy" in upd.policy_update.labels
    gone = ae.policy_event(policy, deleted=True, revision=78)
    assert gone.type == flow_pb2.POLICY_DELETED and gone.policy_update.rule_count == 0


def test_service_and_ipcache_events() -> None:
    up = ae.service_upsert(7, "default/webpod", "ClusterIP", "10.96.0.10", 80, [("10.0.1.5", 8080)])
    assert up.type == flow_pb2.SERVICE_UPSERTED
    assert (up.service_upsert.name, up.service_upsert.namespace, up.service_upsert.id) == ("webpod", "default", 7)
    assert (up.service_upsert.frontend_address.ip, up.service_upsert.frontend_address.port) == ("10.96.0.10", 80)
    assert [(b.ip, b.port) for b in up.service_upsert.backend_addresses] == [("10.0.1.5", 8080)]
    assert ae.service_delete(7).service_delete.id == 7
    moved = ae.ipcache_event("10.0.1.5/32", {"identity": 300, "tunnelEndpoint": "192.168.1.2"}, {"identity": 299},
                             {"namespace": "shop", "pod_name": "web-1"})
    note = moved.ipcache_update
    assert moved.type == flow_pb2.IPCACHE_UPSERTED
    assert (note.cidr, note.identity, note.old_identity.value, note.host_ip) == ("10.0.1.5/32", 300, 299, "192.168.1.2")
    assert (note.namespace, note.pod_name) == ("shop", "web-1")
    fresh = ae.ipcache_event("10.0.1.6/32", {"identity": 5}, None)
    assert not fresh.ipcache_update.HasField("old_identity")
    deleted = ae.ipcache_event("10.0.1.6/32", None, {"identity": 5})
    assert deleted.type == flow_pb2.IPCACHE_DELETED and deleted.ipcache_update.identity == 5


def test_frontend_changes() -> None:
    assert ae.frontend_changes({1: ("a",), 2: ("b",)}, {2: ("b2",), 3: ("c",)}) == ([2, 3], [1])
    assert ae.frontend_changes({1: ("a",)}, {1: ("a",)}) == ([], [])


def test_peer_changes_added_updated_deleted() -> None:
    old = {"n1": PeerInfo("10.0.0.1:4244", "n1.default.hubble-grpc.cilium.io"), "n2": PeerInfo("10.0.0.2:4244")}
    new = {"n1": PeerInfo("10.0.0.9:4244", "n1.default.hubble-grpc.cilium.io"), "n3": PeerInfo("10.0.0.3:4244")}
    got = [(c.name, c.type, c.address, c.tls.server_name if c.HasField("tls") else None) for c in changes(old, new)]
    assert got == [("n2", peer_pb2.PEER_DELETED, "10.0.0.2:4244", None),
                   ("n1", peer_pb2.PEER_UPDATED, "10.0.0.9:4244", "n1.default.hubble-grpc.cilium.io"),
                   ("n3", peer_pb2.PEER_ADDED, "10.0.0.3:4244", None)]


@pytest.fixture
def node(sockdir: Path) -> Iterator[tuple[ObserverServer, FlowRing, PeerSource, list[int], str]]:  # noqa: F811
    ring, events = FlowRing(100), FlowRing(100)
    for i in range(3):
        events.append(ae.response(ae.endpoint_event(POD, created=True, endpoint_id=i), "n1", T0 + i))
    peers = PeerSource({"n1": PeerInfo("10.0.0.1:4244")})
    lost = [0]
    path = str(sockdir / "n1.sock")
    server = ObserverServer(ring, "n1", path, follow_wait=0.05, perf_lost=lambda: lost[0], agent_events=events,
                            peers=peers, address="10.0.0.1:4244")
    server.start()
    try:
        yield server, events, peers, lost, path
    finally:
        server.stop(grace=None)


def test_agent_events_last_first_and_follow(node: tuple) -> None:
    _, events, _, _, path = node
    with grpc.insecure_channel(f"unix:{path}") as channel:
        s = observer_pb2_grpc.ObserverStub(channel)
        last = list(s.GetAgentEvents(observer_pb2.GetAgentEventsRequest(number=2), timeout=TIMEOUT))
        assert [r.agent_event.endpoint_update.id for r in last] == [1, 2]
        assert all(r.node_name == "n1" for r in last)
        first = list(s.GetAgentEvents(observer_pb2.GetAgentEventsRequest(number=1, first=True), timeout=TIMEOUT))
        assert [r.agent_event.endpoint_update.id for r in first] == [0]
        call = s.GetAgentEvents(observer_pb2.GetAgentEventsRequest(follow=True), timeout=TIMEOUT)
        threading.Timer(0.2, lambda: events.append(
            ae.response(ae.service_delete(9), "n1", T0 + 10))).start()
        got = next(call)
        call.cancel()
        assert got.agent_event.type == flow_pb2.SERVICE_DELETED


def test_follow_reports_datapath_lost_events(node: tuple) -> None:
    _, _, _, lost, path = node
    with grpc.insecure_channel(f"unix:{path}") as channel:
        call = observer_pb2_grpc.ObserverStub(channel).GetFlows(observer_pb2.GetFlowsRequest(follow=True),
                                                                timeout=TIMEOUT)
        time.sleep(0.2)
        lost[0] = 17
        got = next(call)
        call.cancel()
    assert got.WhichOneof("response_types") == "lost_events"
    assert (got.lost_events.source, got.lost_events.num_events_lost) == (flow_pb2.PERF_EVENT_RING_BUFFER, 17)


def test_peer_notify_sends_known_peers_then_changes(node: tuple) -> None:
    server, _, peers, _, path = node
    with grpc.insecure_channel(f"unix:{path}") as channel:
        call = peer_pb2_grpc.PeerStub(channel).Notify(peer_pb2.NotifyRequest(), timeout=TIMEOUT)
        first = next(call)
        assert (first.name, first.address, first.type) == ("n1", "10.0.0.1:4244", peer_pb2.PEER_ADDED)
        peers.set({"n1": PeerInfo("10.0.0.1:4244"), "n2": PeerInfo("10.0.0.2:4244", "n2.x")})
        second = next(call)
        call.cancel()
    assert (second.name, second.type, second.tls.server_name) == ("n2", peer_pb2.PEER_ADDED, "n2.x")
    nodes = observer_pb2_grpc.ObserverStub(grpc.insecure_channel(f"unix:{path}")).GetNodes(
        observer_pb2.GetNodesRequest(), timeout=TIMEOUT).nodes
    assert [n.address for n in nodes] == ["10.0.0.1:4244"]


def test_relay_merges_agent_events_and_serves_peers(node: tuple, sockdir: Path) -> None:  # noqa: F811
    _, _, _, _, path = node
    other = FlowRing(10)
    other.append(ae.response(ae.agent_started(T0), "n2", T0 + 1))
    other_path = str(sockdir / "n2.sock")
    second = ObserverServer(FlowRing(10), "n2", other_path, follow_wait=0.05, agent_events=other)
    second.start()
    second.servicer.ring().append(make_flow(1, "n2", "web", 80))
    relay = Relay([Peer("n1", path), Peer("n2", other_path)], str(sockdir / "relay.sock"), follow_wait=0.05)
    relay.start()
    try:
        with grpc.insecure_channel(f"unix:{sockdir / 'relay.sock'}") as channel:
            s = observer_pb2_grpc.ObserverStub(channel)
            merged = list(s.GetAgentEvents(observer_pb2.GetAgentEventsRequest(), timeout=TIMEOUT))
            assert [(r.node_name, r.time.ToNanoseconds()) for r in merged] == [
                ("n1", T0), ("n1", T0 + 1), ("n2", T0 + 1), ("n1", T0 + 2)]  # ties keep the peers' order
            assert [r.agent_event.type for r in merged][2] == flow_pb2.AGENT_STARTED
            assert list(s.GetDebugEvents(observer_pb2.GetDebugEventsRequest(), timeout=TIMEOUT)) == []
            nodes = s.GetNodes(observer_pb2.GetNodesRequest(), timeout=TIMEOUT).nodes
            assert sorted((n.name, n.address) for n in nodes) == [("n1", path), ("n2", other_path)]
            notes = peer_pb2_grpc.PeerStub(channel).Notify(peer_pb2.NotifyRequest(), timeout=TIMEOUT)
            assert sorted((next(notes).name, next(notes).name)) == ["n1", "n2"]
            notes.cancel()
    finally:
        relay.stop(grace=None)
        second.stop(grace=None)


def test_a_follower_overrun_by_the_ring_gets_a_lost_event_and_the_metric_counts_it(sockdir: Path) -> None:  # noqa: F811
    ring, counted = FlowRing(4), []
    server = ObserverServer(ring, "n1", str(sockdir / "small.sock"), follow_wait=0.5,
                            on_lost=lambda source, n: counted.append((source, n)))
    server.start()
    try:
        with grpc.insecure_channel(f"unix:{sockdir / 'small.sock'}") as channel:
            call = observer_pb2_grpc.ObserverStub(channel).GetFlows(
                observer_pb2.GetFlowsRequest(follow=True), timeout=TIMEOUT)
            time.sleep(0.2)  # the server took its cursor and waits up to 0.5 s: overrun the ring meanwhile
            ring.extend([make_flow(i, "n1", "web", 80) for i in range(10)])
            got = next(call)
            rest = [next(call) for _ in range(4)]
            call.cancel()
    finally:
        server.stop(grace=None)
    assert got.WhichOneof("response_types") == "lost_events"
    assert (got.lost_events.source, got.lost_events.num_events_lost) == (flow_pb2.HUBBLE_RING_BUFFER, 6)
    assert [r.flow.uuid for r in rest] == ["n1-6", "n1-7", "n1-8", "n1-9"]
    assert counted == [("hubble_ring_buffer", 6)]


def test_describe_prints_type_and_fields() -> None:
    assert ae.describe(ae.endpoint_event(POD, created=True, endpoint_id=3)) == (
        "ENDPOINT_CREATED (id: 3, labels: [k8s:app=web, k8s:io.kubernetes.pod.namespace=shop], "
        "pod_name: web-1, namespace: shop)")
    up = ae.describe(ae.service_upsert(7, "default/webpod", "ClusterIP", "10.96.0.10", 80, [("10.0.1.5", 8080)]))
    assert up.startswith("SERVICE_UPSERTED (id: 7, frontend_address: 10.96.0.10:80, backend_addresses: "
                         "[10.0.1.5:8080], type: ClusterIP")
    assert ae.describe(flow_pb2.AgentEvent(type=flow_pb2.AGENT_STARTED)) == "AGENT_STARTED"
