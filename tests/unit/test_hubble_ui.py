"""Hubble UI: the service map folded from flows, and the UI server's JSON API and static page over a
real in-process Observer server (gRPC on a unix socket)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from membrane.hubble.proto.flow import flow_pb2
from membrane.hubble.ring import FlowRing
from membrane.hubble.servicemap import ServiceMap, endpoint_node
from membrane.hubbleserver.observer import ObserverServer
from membrane.hubbleserver.ui import UIServer
from tests.unit.test_hubble_server import sockdir  # noqa: F401 - fixture

T0 = 1_700_000_000_000_000_000


def flow(i: int, src: tuple[str, str], dst: tuple[str, str], verdict: int = flow_pb2.FORWARDED,
         reply: bool | None = False, port: int = 80, dst_identity: int = 0) -> flow_pb2.Flow:
    f = flow_pb2.Flow(uuid=f"u{i}", node_name="n1", verdict=verdict)
    f.time.FromNanoseconds(T0 + i)
    f.IP.source, f.IP.destination = "10.0.0.1", "10.0.0.2"
    f.source.namespace, f.source.pod_name = src
    f.destination.namespace, f.destination.pod_name = dst
    f.destination.identity = dst_identity
    f.l4.TCP.source_port, f.l4.TCP.destination_port = (port, 40000) if reply else (40000, port)
    if reply is not None:
        f.is_reply.value = reply
    if verdict == flow_pb2.DROPPED:
        f.drop_reason_desc = flow_pb2.POLICY_DENIED
    return f


def test_nodes_are_workloads_services_reserved_identities_or_ips() -> None:
    ep = flow_pb2.Endpoint(namespace="shop", pod_name="web-7d9-x", workloads=[flow_pb2.Workload(name="web")])
    assert endpoint_node(ep, flow_pb2.Service(), "").id == "shop/web"
    assert endpoint_node(flow_pb2.Endpoint(namespace="a", pod_name="p"), flow_pb2.Service(), "").id == "a/p"
    svc = endpoint_node(flow_pb2.Endpoint(), flow_pb2.Service(namespace="default", name="webpod"), "10.96.0.1")
    assert (svc.id, svc.kind) == ("default/webpod", "service")
    assert endpoint_node(flow_pb2.Endpoint(identity=2), flow_pb2.Service(), "1.1.1.1").id == "world"
    assert endpoint_node(flow_pb2.Endpoint(identity=99999), flow_pb2.Service(), "1.1.1.1").id == "1.1.1.1"


def test_requests_and_replies_make_one_edge_and_a_drop_turns_it_red() -> None:
    smap = ServiceMap()
    smap.add(flow(1, ("default", "client"), ("default", "web")))
    smap.add(flow(2, ("default", "web"), ("default", "client"), reply=True))
    out = smap.to_dict()
    assert [(e["source"], e["target"], e["port"], e["forwarded"], e["verdict"]) for e in out["edges"]] == [
        ("default/client", "default/web", "TCP/80", 2, "forwarded")]
    smap.add(flow(3, ("default", "client"), ("default", "web"), verdict=flow_pb2.DROPPED, reply=None))
    edge = smap.to_dict()["edges"][0]
    assert (edge["verdict"], edge["dropped"], edge["reasons"]) == ("dropped", 1, ["POLICY_DENIED"])
    assert [n["id"] for n in smap.to_dict()["nodes"]] == ["default/client", "default/web"]


def test_namespace_keeps_flows_touching_it() -> None:
    smap = ServiceMap("shop")
    smap.add(flow(1, ("default", "client"), ("default", "web")))
    smap.add(flow(2, ("default", "client"), ("shop", "api"), port=8080))
    assert [(e["source"], e["target"]) for e in smap.to_dict()["edges"]] == [("default/client", "shop/api")]


@pytest.fixture
def ui(sockdir: Path) -> Iterator[str]:  # noqa: F811
    ring = FlowRing(100)
    ring.extend([flow(1, ("default", "client"), ("default", "web")),
                 flow(2, ("default", "client"), ("default", "web"), verdict=flow_pb2.DROPPED, reply=None),
                 flow(3, ("shop", "a"), ("shop", "b"))])
    node = ObserverServer(ring, "n1", str(sockdir / "n1.sock"), follow_wait=0.05)
    node.start()
    server = UIServer(f"unix:{sockdir / 'n1.sock'}", port=0)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()
        node.stop(grace=None)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_ui_serves_page_map_flows_and_namespaces(ui: str) -> None:
    status, page = get(ui + "/")
    assert status == 200 and '<svg id="map"' in page and "app.js" in page
    assert "http" not in page.replace("http://www.w3.org", ""), "no CDN or remote asset"
    assert get(ui + "/app.js")[0] == 200 and get(ui + "/style.css")[0] == 200
    assert json.loads(get(ui + "/api/namespaces")[1]) == {"namespaces": ["default", "shop"]}
    smap = json.loads(get(ui + "/api/map?namespace=default")[1])
    assert [(e["source"], e["target"], e["verdict"]) for e in smap["edges"]] == [
        ("default/client", "default/web", "dropped")]
    rows = json.loads(get(ui + "/api/flows?verdict=dropped")[1])["flows"]
    assert [(r["source"], r["verdict"], r["verdict_class"]) for r in rows] == [
        ("default/client:40000", "DROPPED", "dropped")]
    assert len(json.loads(get(ui + "/api/flows?namespace=shop")[1])["flows"]) == 1


def test_ui_refuses_bad_requests(ui: str) -> None:
    assert get(ui + "/api/flows?verdict=maybe")[0] == 400
    assert get(ui + "/api/flows?limit=lots")[0] == 400
    assert get(ui + "/api/nothing")[0] == 404
    assert get(ui + "/../../etc/passwd")[0] == 404
    assert get(ui + "/ui.py")[0] == 404


def test_ui_listens_on_loopback_only() -> None:
    server = UIServer("unix:/nonexistent.sock", port=0)
    try:
        assert server.httpd.server_address[0] == "127.0.0.1"
    finally:
        server.httpd.server_close()
        server.client.close()
