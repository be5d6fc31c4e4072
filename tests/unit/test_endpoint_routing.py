from __future__ import annotations

from membrane.endpoint.model import Endpoint, EndpointTable
from membrane.endpoint.routing import NodeInfo, RouteSpec, endpoint_route, node_routes

NODES = [
    NodeInfo("k8s-ctr", "192.168.10.100", ("10.0.0.0/24",), "192.168.10.0/24"),
    NodeInfo("k8s-w1", "192.168.10.101", ("10.0.1.0/24",), "192.168.10.0/24"),
    NodeInfo("k8s-w2", "192.168.20.102", ("10.0.2.0/24",), "192.168.20.0/24"),
    NodeInfo("k8s-w3", "192.168.10.103", (), "192.168.10.0/24"),
]


def test_routes_to_pod_cidrs_of_nodes_on_the_same_segment_only() -> None:
    routes = node_routes("k8s-ctr", NODES, "eth1")
    assert routes == {"10.0.1.0/24": RouteSpec("10.0.1.0/24", "192.168.10.101", "eth1")}


def test_no_routes_without_auto_direct_routes_or_unknown_self() -> None:
    assert node_routes("k8s-ctr", NODES, "eth1", auto_direct=False) == {}
    assert node_routes("ghost", NODES, "eth1") == {}


def test_endpoint_route_is_a_link_scope_host_route() -> None:
    assert endpoint_route("10.0.1.5", "lxc0123") == RouteSpec("10.0.1.5/32", None, "lxc0123", "link")


def _ep(i: int, cid: str) -> Endpoint:
    return Endpoint(i, cid, "eth0", "/run/netns/x", "default", f"p{i}", f"10.0.0.{i + 10}", f"lxc{i}", 10 + i,
                    "aa:aa:aa:aa:aa:aa", "bb:bb:bb:bb:bb:bb")


def test_endpoint_ids_are_reused_lowest_first_and_survive_snapshot() -> None:
    table = EndpointTable()
    for i, cid in enumerate(["a", "b", "c"], start=1):
        assert table.next_id() == i
        table.put(_ep(i, cid))
    table.remove("b", "eth0")
    assert table.next_id() == 2
    restored = EndpointTable.restore(table.snapshot())
    assert [e.id for e in restored.list()] == [1, 3]
    assert restored.by_ip("10.0.0.13").container_id == "c"
