"""In-process gRPC round trips over unix sockets: Observer server and relay, with clients made
from the generated stubs."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from membrane.hubble.proto.flow import flow_pb2
from membrane.hubble.proto.observer import observer_pb2, observer_pb2_grpc
from membrane.hubble.proto.relay import relay_pb2
from membrane.hubble.ring import FlowRing
from membrane.hubbleserver.observer import ObserverServer
from membrane.hubbleserver.relay import Relay

TIMEOUT = 10.0


def make_flow(i: int, node: str, pod: str, port: int) -> flow_pb2.Flow:
    f = flow_pb2.Flow(uuid=f"{node}-{i}", node_name=node, verdict=flow_pb2.FORWARDED, Type=flow_pb2.L3_L4)
    f.time.FromNanoseconds(1_700_000_000_000_000_000 + i * 1_000_000)
    f.source.namespace, f.source.pod_name = "default", pod
    f.l4.TCP.destination_port = port
    return f


@pytest.fixture
def sockdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="hb", dir="/tmp") as d:
        yield Path(d)


@pytest.fixture
def servers(sockdir: Path) -> Iterator[tuple[list[FlowRing], list[str]]]:
    rings = [FlowRing(capacity=100), FlowRing(capacity=50)]
    # node a: even timestamps, node b: odd ones, so a merge by time interleaves them
    rings[0].extend([make_flow(2 * i, "a", "client", 80 if i % 2 else 443) for i in range(5)])
    rings[1].extend([make_flow(2 * i + 1, "b", "web", 80) for i in range(5)])
    paths = [str(sockdir / "a.sock"), str(sockdir / "b.sock")]
    started = [ObserverServer(r, n, p, follow_wait=0.05) for r, n, p in zip(rings, "ab", paths, strict=True)]
    for s in started:
        s.start()
    try:
        yield rings, paths
    finally:
        for s in started:
            s.stop(grace=None)


def stub(path: str) -> tuple[grpc.Channel, observer_pb2_grpc.ObserverStub]:
    channel = grpc.insecure_channel(f"unix:{path}")
    return channel, observer_pb2_grpc.ObserverStub(channel)


def get_flows(s: observer_pb2_grpc.ObserverStub, **kw: object) -> list[observer_pb2.GetFlowsResponse]:
    return list(s.GetFlows(observer_pb2.GetFlowsRequest(**kw), timeout=TIMEOUT))


def test_get_flows_number_first_filters(servers: tuple[list[FlowRing], list[str]]) -> None:
    _, paths = servers
    channel, s = stub(paths[0])
    with channel:
        last = get_flows(s, number=2)
        assert [r.flow.uuid for r in last] == ["a-6", "a-8"]
        assert all(r.node_name == "a" and r.time == r.flow.time for r in last)
        assert [r.flow.uuid for r in get_flows(s, number=2, first=True)] == ["a-0", "a-2"]
        port80 = get_flows(s, whitelist=[flow_pb2.FlowFilter(destination_port=["80"])])
        assert [r.flow.uuid for r in port80] == ["a-2", "a-6"]
        none = get_flows(s, whitelist=[flow_pb2.FlowFilter(source_pod=["default/"])], blacklist=[
            flow_pb2.FlowFilter(destination_port=["80", "443"])])  # fmt: skip
        assert none == []
        req = observer_pb2.GetFlowsRequest()
        req.since.FromNanoseconds(1_700_000_000_000_000_000 + 2_000_000)
        req.until.FromNanoseconds(1_700_000_000_000_000_000 + 4_000_000)
        assert [r.flow.uuid for r in s.GetFlows(req, timeout=TIMEOUT)] == ["a-2", "a-4"]


def test_follow_streams_new_flows(servers: tuple[list[FlowRing], list[str]]) -> None:
    rings, paths = servers
    channel, s = stub(paths[0])
    with channel:
        call = s.GetFlows(observer_pb2.GetFlowsRequest(number=1, follow=True), timeout=TIMEOUT)
        assert next(call).flow.uuid == "a-8"  # the server has taken its cursor
        rings[0].append(make_flow(100, "a", "client", 80))
        assert next(call).flow.uuid == "a-100"
        call.cancel()


def test_server_status_nodes_and_health(servers: tuple[list[FlowRing], list[str]]) -> None:
    _, paths = servers
    channel, s = stub(paths[1])
    with channel:
        st = s.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=TIMEOUT)
        assert (st.num_flows, st.max_flows, st.seen_flows) == (5, 50, 5)
        assert st.uptime_ns > 0 and st.num_connected_nodes.value == 1
        nodes = s.GetNodes(observer_pb2.GetNodesRequest(), timeout=TIMEOUT).nodes
        assert [(n.name, n.state, n.num_flows) for n in nodes] == [("b", relay_pb2.NODE_CONNECTED, 5)]
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "hubble.server.Observer", "observer.Observer"):  # the first is what `hubble status` asks
            resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as err:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=TIMEOUT)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert list(s.GetAgentEvents(observer_pb2.GetAgentEventsRequest(), timeout=TIMEOUT)) == []
        assert list(s.GetDebugEvents(observer_pb2.GetDebugEventsRequest(), timeout=TIMEOUT)) == []


def test_relay_merges_sums_and_lists(servers: tuple[list[FlowRing], list[str]], sockdir: Path) -> None:
    _, paths = servers
    relay = Relay(paths, str(sockdir / "relay.sock"), follow_wait=0.05)
    relay.start()
    try:
        channel, s = stub(str(sockdir / "relay.sock"))
        with channel:
            merged = [r.flow.uuid for r in get_flows(s)]
            assert merged == [f"{'ab'[i % 2]}-{i}" for i in range(10)]
            assert [r.flow.uuid for r in get_flows(s, number=3)] == ["b-7", "a-8", "b-9"]
            web = get_flows(s, whitelist=[flow_pb2.FlowFilter(source_pod=["default/web"])])
            assert {r.node_name for r in web} == {"b"} and len(web) == 5
            st = s.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=TIMEOUT)
            assert (st.num_flows, st.max_flows, st.seen_flows) == (10, 150, 10)
            assert st.num_connected_nodes.value == 2 and st.num_unavailable_nodes.value == 0
            nodes = s.GetNodes(observer_pb2.GetNodesRequest(), timeout=TIMEOUT).nodes
            assert sorted(n.name for n in nodes) == ["a", "b"]
    finally:
        relay.stop(grace=None)


def test_relay_reports_unavailable_peer(servers: tuple[list[FlowRing], list[str]], sockdir: Path) -> None:
    _, paths = servers
    missing = str(sockdir / "gone.sock")
    relay = Relay([paths[0], missing], str(sockdir / "relay2.sock"), timeout=2.0)
    relay.start()
    try:
        channel, s = stub(str(sockdir / "relay2.sock"))
        with channel:
            out = get_flows(s)
            assert out[0].node_status.state_change == relay_pb2.NODE_UNAVAILABLE
            assert list(out[0].node_status.node_names) == [missing]
            assert len(out) == 6
            st = s.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=TIMEOUT)
            assert st.num_unavailable_nodes.value == 1 and list(st.unavailable_nodes) == [missing]
            nodes = s.GetNodes(observer_pb2.GetNodesRequest(), timeout=TIMEOUT).nodes
            assert {n.name: n.state for n in nodes} == {
                "a": relay_pb2.NODE_CONNECTED,
                missing: relay_pb2.NODE_UNAVAILABLE,
            }
    finally:
        relay.stop(grace=None)


def test_relay_follow(servers: tuple[list[FlowRing], list[str]], sockdir: Path) -> None:
    rings, paths = servers
    relay = Relay(paths, str(sockdir / "relay3.sock"), follow_wait=0.05)
    relay.start()
    try:
        channel, s = stub(str(sockdir / "relay3.sock"))
        with channel:
            call = s.GetFlows(observer_pb2.GetFlowsRequest(number=1, follow=True), timeout=TIMEOUT)
            assert {next(call).flow.uuid, next(call).flow.uuid} == {"a-8", "b-9"}
            rings[1].append(make_flow(200, "b", "web", 80))
            assert next(call).flow.uuid == "b-200"
            call.cancel()
    finally:
        relay.stop(grace=None)
