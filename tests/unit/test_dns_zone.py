"""Cluster DNS answers built from fixed Service / EndpointSlice / Pod objects (no network)."""

from __future__ import annotations

from typing import Any

from dnslib import QTYPE, RCODE, DNSRecord

from membrane.lab.workloads.dns import TTL, ClusterZone, DnsServer, StaticZone, parse_records

SERVICES: list[dict[str, Any]] = [
    {"metadata": {"name": "web", "namespace": "default"},
     "spec": {"clusterIP": "10.96.0.5", "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                                                   {"name": "dns", "port": 53, "protocol": "UDP"}]}},
    {"metadata": {"name": "db", "namespace": "prod"},
     "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}},
    {"metadata": {"name": "raw", "namespace": "prod"},
     "spec": {"clusterIP": "None", "publishNotReadyAddresses": True}},
    {"metadata": {"name": "empty", "namespace": "prod"}, "spec": {"clusterIP": "None"}},
    {"metadata": {"name": "ext", "namespace": "default"},
     "spec": {"type": "ExternalName", "externalName": "ipinfo.io"}},
]
SLICES: list[dict[str, Any]] = [
    {"metadata": {"name": "db-1", "namespace": "prod", "labels": {"kubernetes.io/service-name": "db"}},
     "addressType": "IPv4", "ports": [{"name": "pg", "port": 5433, "protocol": "TCP"}],
     "endpoints": [{"addresses": ["10.0.1.5"], "conditions": {"ready": True}},
                   {"addresses": ["10.0.2.6"], "conditions": {}},
                   {"addresses": ["10.0.2.7"], "conditions": {"ready": False}},
                   {"addresses": ["10.0.1.9"], "hostname": "db-x", "conditions": {"ready": True}}]},
    {"metadata": {"name": "raw-1", "namespace": "prod", "labels": {"kubernetes.io/service-name": "raw"}},
     "endpoints": [{"addresses": ["10.0.3.3"], "conditions": {"ready": False}}]},
    {"metadata": {"name": "other", "namespace": "default", "labels": {"kubernetes.io/service-name": "db"}},
     "endpoints": [{"addresses": ["10.0.9.9"]}]},
]
PODS: list[dict[str, Any]] = [
    {"metadata": {"name": "db-0", "namespace": "prod"}, "spec": {"hostname": "db-0", "subdomain": "db"},
     "status": {"podIP": "10.0.1.5"}},
]


def zone() -> ClusterZone:
    return ClusterZone(SERVICES, SLICES, PODS)


def ask(z: Any, name: str, qtype: str = "A") -> DNSRecord:
    reply = z.answer(DNSRecord.question(name, qtype))
    assert reply is not None, f"{name} was not answered"
    return reply


def values(reply: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr)


def test_cluster_ip_service() -> None:
    reply = ask(zone(), "web.default.svc.cluster.local")
    assert reply.header.rcode == RCODE.NOERROR and reply.header.aa
    assert values(reply) == ["10.96.0.5"]
    assert all(rr.ttl == TTL for rr in reply.rr)


def test_names_are_case_insensitive_and_may_end_in_a_dot() -> None:
    assert values(ask(zone(), "WEB.Default.svc.cluster.local.")) == ["10.96.0.5"]


def test_srv_per_port_with_target_address() -> None:
    reply = ask(zone(), "_http._tcp.web.default.svc.cluster.local", "SRV")
    assert values(reply) == ["0 100 80 web.default.svc.cluster.local."]
    assert [str(rr.rdata) for rr in reply.ar] == ["10.96.0.5"]
    assert values(ask(zone(), "_dns._udp.web.default.svc.cluster.local", "SRV")) == [
        "0 100 53 web.default.svc.cluster.local."]
    assert len(ask(zone(), "web.default.svc.cluster.local", "SRV").rr) == 2
    assert ask(zone(), "_http._udp.web.default.svc.cluster.local", "SRV").header.rcode == RCODE.NXDOMAIN


def test_headless_service_lists_ready_endpoints() -> None:
    assert values(ask(zone(), "db.prod.svc.cluster.local")) == ["10.0.1.5", "10.0.1.9", "10.0.2.6"]


def test_headless_endpoint_hostnames() -> None:
    assert values(ask(zone(), "db-0.db.prod.svc.cluster.local")) == ["10.0.1.5"]  # pod hostname+subdomain
    assert values(ask(zone(), "db-x.db.prod.svc.cluster.local")) == ["10.0.1.9"]  # endpoint hostname
    assert values(ask(zone(), "10-0-2-6.db.prod.svc.cluster.local")) == ["10.0.2.6"]  # dashed IP
    assert ask(zone(), "10-0-2-7.db.prod.svc.cluster.local").header.rcode == RCODE.NXDOMAIN  # not ready


def test_headless_srv_uses_endpoint_ports_and_names() -> None:
    reply = ask(zone(), "_pg._tcp.db.prod.svc.cluster.local", "SRV")
    assert values(reply) == ["0 100 5433 10-0-2-6.db.prod.svc.cluster.local.",
                             "0 100 5433 db-0.db.prod.svc.cluster.local.",
                             "0 100 5433 db-x.db.prod.svc.cluster.local."]
    assert sorted(str(rr.rdata) for rr in reply.ar) == ["10.0.1.5", "10.0.1.9", "10.0.2.6"]


def test_publish_not_ready_addresses() -> None:
    assert values(ask(zone(), "raw.prod.svc.cluster.local")) == ["10.0.3.3"]


def test_headless_without_endpoints_is_nxdomain() -> None:
    assert ask(zone(), "empty.prod.svc.cluster.local").header.rcode == RCODE.NXDOMAIN


def test_external_name_is_a_cname() -> None:
    reply = ask(zone(), "ext.default.svc.cluster.local")
    assert reply.rr[0].rtype == QTYPE.CNAME and values(reply) == ["ipinfo.io."]


def test_pod_records() -> None:
    assert values(ask(zone(), "10-0-4-4.default.pod.cluster.local")) == ["10.0.4.4"]
    assert ask(zone(), "10-0-4.default.pod.cluster.local").header.rcode == RCODE.NXDOMAIN
    assert ask(zone(), "x-y-z-w.default.pod.cluster.local").header.rcode == RCODE.NXDOMAIN


def test_unknown_cluster_names_are_nxdomain_with_soa() -> None:
    for name in ("nope.default.svc.cluster.local", "web.other.svc.cluster.local", "cluster.local.x.cluster.local"):
        reply = ask(zone(), name)
        assert reply.header.rcode == RCODE.NXDOMAIN and not reply.rr
        assert reply.auth[0].rtype == QTYPE.SOA


def test_other_type_of_known_name_is_nodata() -> None:
    reply = ask(zone(), "web.default.svc.cluster.local", "AAAA")
    assert reply.header.rcode == RCODE.NOERROR and not reply.rr and reply.auth[0].rtype == QTYPE.SOA


def test_reverse_lookups() -> None:
    assert values(ask(zone(), "5.0.96.10.in-addr.arpa", "PTR")) == ["web.default.svc.cluster.local."]
    assert values(ask(zone(), "9.1.0.10.in-addr.arpa", "PTR")) == ["db-x.db.prod.svc.cluster.local."]
    assert zone().answer(DNSRecord.question("1.1.1.1.in-addr.arpa", "PTR")) is None


def test_other_names_are_not_ours() -> None:
    assert zone().answer(DNSRecord.question("one.one.one.one", "A")) is None
    assert zone().answer(DNSRecord.question("cluster.localhost", "A")) is None


def test_other_cluster_domain() -> None:
    z = ClusterZone(SERVICES, SLICES, PODS, domain="lab.example")
    assert values(ask(z, "web.default.svc.lab.example")) == ["10.96.0.5"]
    assert z.answer(DNSRecord.question("web.default.svc.cluster.local", "A")) is None


def test_static_zone() -> None:
    z = StaticZone(parse_records(["one.one.one.one=203.0.113.11", "IPinfo.io.=203.0.113.12"]))
    assert values(ask(z, "one.one.one.one")) == ["203.0.113.11"]
    assert values(ask(z, "ipinfo.io")) == ["203.0.113.12"]
    assert ask(z, "example.org").header.rcode == RCODE.NXDOMAIN


def test_parse_records_rejects_bad_pairs() -> None:
    for bad in ("one.one.one.one", "=1.2.3.4", "x=not-an-ip"):
        try:
            parse_records([bad])
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} accepted")


def test_server_without_upstream_answers_servfail_for_foreign_names() -> None:
    server = DnsServer(zone().answer, upstream=None)
    query = DNSRecord.question("example.org", "A")
    out = server.handle(query.pack())
    assert out is not None
    reply = DNSRecord.parse(out)
    assert reply.header.id == query.header.id and reply.header.rcode == RCODE.SERVFAIL


def test_server_drops_garbage_and_survives_resolver_errors() -> None:
    assert DnsServer(zone().answer, None).handle(b"\x01\x02") is None

    def broken(_request: DNSRecord) -> DNSRecord | None:
        raise KeyError("boom")

    out = DnsServer(broken, None).handle(DNSRecord.question("web.default.svc.cluster.local").pack())
    assert out is not None and DNSRecord.parse(out).header.rcode == RCODE.SERVFAIL


def test_server_truncates_big_udp_answers_but_not_tcp() -> None:
    many = [{"metadata": {"name": "big", "namespace": "default", "labels": {"kubernetes.io/service-name": "big"}},
             "endpoints": [{"addresses": [f"10.1.{i // 250}.{i % 250 + 1}"]} for i in range(100)]}]
    z = ClusterZone([{"metadata": {"name": "big", "namespace": "default"}, "spec": {"clusterIP": "None"}}], many, [])
    server = DnsServer(z.answer, None)
    query = DNSRecord.question("big.default.svc.cluster.local").pack()
    udp = DNSRecord.parse(server.handle(query) or b"")
    assert udp.header.tc and not udp.rr
    tcp = DNSRecord.parse(server.handle(query, tcp=True) or b"")
    assert len(tcp.rr) == 100 and not tcp.header.tc
