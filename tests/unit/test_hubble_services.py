"""Service-aware flows: which Service a flow's ends belong to (frontends, then backends)."""

from __future__ import annotations

from membrane.hubble.events import flow_from_event
from membrane.hubble.proto.flow import flow_pb2
from membrane.hubble.render import compact
from membrane.hubble.services import ServiceAddress, ServiceIndex
from tests.unit.test_hubble_events import T0, frame, lookup, tcp, udp

WEBPOD = ServiceAddress("default/webpod", "10.96.0.10", 80, "TCP", (("10.0.1.20", 8080), ("10.0.2.5", 8080)))
NODEPORT = ServiceAddress("default/webpod", "192.168.50.2", 30080, "TCP", (("10.0.1.20", 8080),))
DNS = ServiceAddress("kube-system/kube-dns", "10.96.0.53", 53, "UDP", (("10.0.1.20", 53),))
INDEX = ServiceIndex([WEBPOD, NODEPORT, DNS])


def test_frontends_and_backends_name_their_service() -> None:
    assert INDEX.lookup("10.96.0.10", 80, "TCP") == ("default", "webpod")
    assert INDEX.lookup("192.168.50.2", 30080, 6) == ("default", "webpod")
    assert INDEX.lookup("10.0.2.5", 8080, "tcp") == ("default", "webpod")
    assert INDEX.lookup("10.0.1.20", 53, 17) == ("kube-system", "kube-dns")


def test_other_ports_protocols_and_addresses_name_none() -> None:
    assert INDEX.lookup("10.96.0.10", 81, "TCP") is None
    assert INDEX.lookup("10.96.0.10", 80, "UDP") is None
    assert INDEX.lookup("10.0.1.20", 53, "TCP") is None
    assert INDEX.lookup("10.0.9.9", 80, "TCP") is None
    assert INDEX.lookup("10.96.0.10", 0, "TCP") is None
    assert len(INDEX) == 3


def test_a_frontend_wins_over_a_backend_and_the_first_service_over_later_ones() -> None:
    other = ServiceAddress("shop/api", "10.0.2.5", 8080, "TCP")  # a frontend on a pod's address
    late = ServiceAddress("default/second", "10.96.0.11", 80, "TCP", (("10.0.1.20", 8080),))
    index = ServiceIndex([WEBPOD, late, other])
    assert index.lookup("10.0.2.5", 8080, "TCP") == ("shop", "api")
    assert index.lookup("10.0.1.20", 8080, "TCP") == ("default", "webpod")


def _flow(packet: bytes) -> flow_pb2.Flow:
    return flow_from_event({"kind": "trace", "packet": packet, "timestamp_ns": T0, "node_name": "n1",
                            "observation_point": 5, "trace_reason": 0}, lookup, uuid_factory=lambda: "u",
                           lookup_service=INDEX.lookup)


def test_clusterip_flow_names_the_destination_service_and_prints_it() -> None:
    f = _flow(frame(6, tcp(41234, 80, 0x02), src="10.0.1.10", dst="10.96.0.10"))
    assert (f.destination_service.namespace, f.destination_service.name) == ("default", "webpod")
    assert not f.HasField("source_service")
    assert "-> default/webpod:80 " in compact(f)


def test_reply_from_a_backend_names_the_source_service() -> None:
    f = _flow(frame(17, udp(53, 40000), src="10.0.1.20", dst="10.0.1.10"))
    assert (f.source_service.namespace, f.source_service.name) == ("kube-system", "kube-dns")
    assert "default/netpod2:53" in compact(f)  # a known pod is printed by its pod name, as Hubble does


def test_a_port_no_service_uses_gets_no_service() -> None:
    f = _flow(frame(6, tcp(41234, 9999, 0x02), src="10.0.1.10", dst="10.96.0.10"))
    assert not f.HasField("destination_service")
