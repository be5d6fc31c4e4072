"""The lab world's pure parts: where it sits, its routes back to the pods, its answers; the CoreDNS image."""

from __future__ import annotations

import json

from membrane.lab.topology import LabNode, LabRouter, LabTopology
from membrane.lab.workloads import dns
from membrane.lab.workloads.images import resolve
from membrane.lab.world import WORLD_DNS_IP, WORLD_NAMES, caller_response, plan_world, world_routes


def _node(ip: str, cidr: str) -> dict[str, object]:
    return {"status": {"addresses": [{"type": "InternalIP", "address": ip}]}, "spec": {"podCIDRs": [cidr]}}


def test_world_sits_on_the_first_subnet_at_200() -> None:
    topo = LabTopology([LabNode("k8s-ctr", "192.168.10.100/24"), LabNode("k8s-w1", "192.168.10.101/24")])
    plan = plan_world("lab1", topo)
    assert (plan.netns, plan.address, plan.bridge, plan.router_ip) == ("lab1.world", "192.168.10.200/24", "br0", None)
    routes = world_routes(plan, topo, [_node("192.168.10.100", "10.0.0.0/24"), _node("192.168.10.101", "10.0.1.0/24")])
    assert routes == {"10.0.0.0/24": "192.168.10.100", "10.0.1.0/24": "192.168.10.101"}


def test_world_avoids_the_router_address_and_routes_through_it() -> None:
    topo = LabTopology([LabNode("a", "192.168.10.100/24"), LabNode("b", "192.168.20.102/24")],
                       LabRouter("router", ["192.168.10.200/24", "192.168.20.200/24"]))
    plan = plan_world("lab2", topo)
    assert plan.address == "192.168.10.254/24"
    assert (plan.router_ip, plan.router_netns) == ("192.168.10.200", "lab2.router")
    routes = world_routes(plan, topo, [_node("192.168.10.100", "10.0.0.0/24"), _node("192.168.20.102", "10.0.1.0/24"),
                                       {"status": {}, "spec": {}}])
    assert routes == {"192.168.20.0/24": "192.168.10.200", "10.0.0.0/24": "192.168.10.100",
                      "10.0.1.0/24": "192.168.10.200"}


def test_world_names_are_on_world_prefixes_and_dns_defaults_to_the_world_resolver() -> None:
    assert WORLD_NAMES["one.one.one.one"] == "203.0.113.11" and WORLD_NAMES["ipinfo.io"] == "203.0.113.12"
    assert dns.DEFAULT_UPSTREAM == WORLD_DNS_IP


def test_caller_response() -> None:
    assert caller_response("/ip", "10.0.0.7", "ipinfo.io") == ("text/plain; charset=utf-8", "10.0.0.7\n")
    ctype, body = caller_response("/", "10.0.0.7", "ipinfo.io:80")
    assert ctype == "application/json" and json.loads(body) == {"ip": "10.0.0.7", "host": "ipinfo.io"}


def test_coredns_image_runs_the_dns_workload() -> None:
    argv = resolve("registry.k8s.io/coredns/coredns:v1.12.0", None, ["-conf", "/etc/coredns/Corefile"])
    assert argv[1:] == ["-m", "membrane.lab.workloads.dns", "-conf", "/etc/coredns/Corefile"]
    assert resolve("coredns/coredns:1.11.1", None, None)[1:] == ["-m", "membrane.lab.workloads.dns"]


def test_dns_flags() -> None:
    args = dns.parse_args(["--lab", "x", "-conf", "/etc/coredns/Corefile", "--record", "a.b=1.2.3.4"])
    assert (args.lab, args.port, args.conf, args.record, args.world) == ("x", 53, "/etc/coredns/Corefile",
                                                                       ["a.b=1.2.3.4"], False)
