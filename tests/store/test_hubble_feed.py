"""The agent's Hubble feed over real etcd mirrors: Service lookups for flows follow the stored Services
and EndpointSlices (with NodePorts on every node), their changes become SERVICE_UPSERTED/DELETED agent
events, pods on this node become ENDPOINT_CREATED/DELETED, policies POLICY_UPDATED, and the peer table
follows the nodes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest

from membrane.agent.hubble_feed import AgentEventFeed, ServiceResolver, peer_table
from membrane.hubble.proto.flow import flow_pb2
from membrane.hubbleserver.peer import PeerInfo
from membrane.store.etcd import EtcdClient
from membrane.store.mirror import Mirror

SERVICE = {"metadata": {"name": "webpod", "namespace": "default"},
           "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
                    "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"}]}}
SLICE = {"metadata": {"name": "webpod-x", "namespace": "default", "labels": {"kubernetes.io/service-name": "webpod"}},
         "addressType": "IPv4", "ports": [{"port": 8080, "protocol": "TCP"}],
         "endpoints": [{"addresses": ["10.0.1.5"], "conditions": {"ready": True}, "nodeName": "n2"}]}


def node(name: str, ip: str) -> dict:
    return {"metadata": {"name": name}, "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


def wait(fn: Callable[[], object], what: str, timeout: float = 5.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def mirrors(client: EtcdClient, ns: str) -> Iterator[dict[str, Mirror]]:
    ms = {kind: Mirror(client, f"{ns}{kind}/").start() for kind in ("svc", "slices", "nodes", "pods", "cnp")}
    for m in ms.values():
        assert m.wait_synced(10)
    yield ms
    for m in ms.values():
        m.stop()


def put(client: EtcdClient, ns: str, kind: str, name: str, obj: dict) -> None:
    client.put(f"{ns}{kind}/{name}", json.dumps(obj))


def types(feed: AgentEventFeed) -> list[int]:
    return [r.agent_event.type for r in feed.ring.snapshot()[0]]


def test_services_follow_the_store_and_report_changes(client: EtcdClient, ns: str, mirrors: dict) -> None:
    put(client, ns, "nodes", "n1", node("n1", "192.168.10.100"))
    put(client, ns, "nodes", "n2", node("n2", "192.168.10.101"))
    wait(lambda: len(mirrors["nodes"]) == 2, "nodes")
    feed = AgentEventFeed("n1")
    resolver = ServiceResolver(mirrors["svc"], mirrors["slices"], mirrors["nodes"], feed)
    assert resolver.lookup("10.96.0.10", 80, "TCP") is None
    put(client, ns, "slices", "webpod-x", SLICE)
    put(client, ns, "svc", "webpod", SERVICE)
    wait(lambda: resolver.lookup("10.0.1.5", 8080, "TCP"), "the backend to name its Service")
    assert resolver.lookup("10.96.0.10", 80, "TCP") == ("default", "webpod")
    assert resolver.lookup("192.168.10.101", 30080, "TCP") == ("default", "webpod")  # another node's NodePort
    upserts = [r.agent_event.service_upsert for r in feed.ring.snapshot()[0]
               if r.agent_event.type == flow_pb2.SERVICE_UPSERTED]
    assert {(u.frontend_address.ip, u.type) for u in upserts} >= {
        ("10.96.0.10", "ClusterIP"), ("192.168.10.100", "NodePort"), ("192.168.10.101", "NodePort")}
    client.delete(f"{ns}svc/webpod")
    wait(lambda: resolver.lookup("10.96.0.10", 80, "TCP") is None, "the Service to go")
    assert types(feed).count(flow_pb2.SERVICE_DELETED) == 3
    assert all(r.node_name == "n1" for r in feed.ring.snapshot()[0])


def test_local_pods_and_policies_become_agent_events(client: EtcdClient, ns: str, mirrors: dict) -> None:
    feed = AgentEventFeed("n1")
    feed.watch_pods(mirrors["pods"], lambda ip: 7 if ip == "10.0.0.5" else 0)
    feed.watch_policies([mirrors["cnp"]])
    pod = {"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}}, "spec": {"nodeName": "n1"}}
    put(client, ns, "pods", "web", pod)  # no IP yet: no endpoint
    put(client, ns, "pods", "other", {**pod, "metadata": {"name": "other", "namespace": "default"},
                                      "spec": {"nodeName": "n2"}, "status": {"podIP": "10.0.9.9"}})
    put(client, ns, "pods", "web", {**pod, "status": {"podIP": "10.0.0.5"}})
    put(client, ns, "cnp", "deny", {"kind": "CiliumNetworkPolicy", "metadata": {"name": "deny", "namespace": "default"},
                                    "spec": {"endpointSelector": {}}})
    wait(lambda: flow_pb2.POLICY_UPDATED in types(feed), "the policy event")
    client.delete(f"{ns}pods/web")
    wait(lambda: flow_pb2.ENDPOINT_DELETED in types(feed), "the endpoint deletion")
    events = [r.agent_event for r in feed.ring.snapshot()[0]]
    endpoints = [(e.type, e.endpoint_update.pod_name, e.endpoint_update.id) for e in events if e.HasField("endpoint_update")]
    assert endpoints == [(flow_pb2.ENDPOINT_CREATED, "web", 7), (flow_pb2.ENDPOINT_DELETED, "web", 7)]


def test_peer_table_follows_nodes(client: EtcdClient, ns: str, mirrors: dict) -> None:
    put(client, ns, "nodes", "n1", node("n1", "192.168.10.100"))
    wait(lambda: len(mirrors["nodes"]) == 1, "the node")
    table = peer_table(mirrors["nodes"], "default", 4244, tls=True)
    assert table.snapshot()[0] == {"n1": PeerInfo("192.168.10.100:4244", "n1.default.hubble-grpc.cilium.io")}
    put(client, ns, "nodes", "n2", node("n2", "192.168.10.101"))
    wait(lambda: "n2" in table.snapshot()[0], "the new node")
    assert peer_table(mirrors["nodes"], "default", 4244, tls=False).snapshot()[0]["n2"].server_name == ""
