"""The egress gateway's pure computation: sources, gateway choice, egress IP, exclusions, hashing."""

from __future__ import annotations

import zlib
from typing import Any

from membrane.egressgw.rows import (
    EXCLUDED,
    GATEWAY_NOT_FOUND,
    NO_EGRESS_IP,
    EgressKey,
    EgressTarget,
    GatewayNode,
    LocalAddresses,
    SourcePod,
    egress_rows,
)
from membrane.model.egress_gw import EgressPolicy, parse_egress_policy
from membrane.model.validate import validate_object

NODES = [
    GatewayNode("w1", "192.168.10.11", {"kubernetes.io/hostname": "w1"}, ("10.0.1.0/24",)),
    GatewayNode("w2", "192.168.10.12", {"kubernetes.io/hostname": "w2", "egress": "yes"}, ("10.0.2.0/24",)),
    GatewayNode("w3", "192.168.10.13", {"kubernetes.io/hostname": "w3", "egress": "yes"}, ("10.0.3.0/24",)),
]
BOT = SourcePod("default", "bot", "10.0.1.5", "w1", {"org": "empire", "class": "mediabot"}, "uid-bot")
OTHER = SourcePod("default", "other", "10.0.1.6", "w1", {"org": "alliance"}, "uid-other")
W2_LOCAL = LocalAddresses("w2", {"eth0": ("192.168.10.12", "192.168.10.240"), "eth1": ("172.30.0.2",)}, "eth0")


def _policy(name: str = "egp", **spec: Any) -> EgressPolicy:
    base: dict[str, Any] = {
        "selectors": [{"podSelector": {"matchLabels": {"org": "empire", "io.kubernetes.pod.namespace": "default"}}}],
        "destinationCIDRs": ["203.0.113.0/24"],
        "egressGateway": {"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "w2"}}},
    }
    base.update(spec)
    obj = {"apiVersion": "cilium.io/v2", "kind": "CiliumEgressGatewayPolicy", "metadata": {"name": name},
           "spec": base}
    return parse_egress_policy(validate_object(obj, "t"))


def _rows(*policies: EgressPolicy, pods: list[SourcePod] | None = None, local: LocalAddresses = W2_LOCAL,
          namespaces: dict[str, dict[str, str]] | None = None) -> dict[EgressKey, EgressTarget]:
    return egress_rows(policies, [BOT, OTHER] if pods is None else pods, NODES, namespaces or {}, local)


def test_selected_pod_gets_the_gateway_and_others_nothing() -> None:
    rows = _rows(_policy())
    assert rows == {EgressKey("10.0.1.5", "203.0.113.0/24"): EgressTarget("192.168.10.12", "192.168.10.12", "egp")}


def test_egress_ip_resolution_on_the_gateway() -> None:
    gw = {"matchLabels": {"kubernetes.io/hostname": "w2"}}
    by_ip = _rows(_policy(egressGateway={"nodeSelector": gw, "egressIP": "192.168.10.240"}))
    assert [t.egress_ip for t in by_ip.values()] == ["192.168.10.240"]
    by_dev = _rows(_policy(egressGateway={"nodeSelector": gw, "interface": "eth1"}))
    assert [t.egress_ip for t in by_dev.values()] == ["172.30.0.2"]
    missing_ip = _rows(_policy(egressGateway={"nodeSelector": gw, "egressIP": "192.168.10.99"}))
    assert [t.egress_ip for t in missing_ip.values()] == [NO_EGRESS_IP]  # drop 204 on the gateway
    missing_dev = _rows(_policy(egressGateway={"nodeSelector": gw, "interface": "eth9"}))
    assert [(t.gateway_ip, t.egress_ip) for t in missing_dev.values()] == [("192.168.10.12", NO_EGRESS_IP)]


def test_other_nodes_know_the_gateway_but_not_its_devices() -> None:
    w1 = LocalAddresses("w1", {"eth0": ("192.168.10.11",)}, "eth0")
    gw = {"matchLabels": {"kubernetes.io/hostname": "w2"}}
    assert [t.egress_ip for t in _rows(_policy(), local=w1).values()] == [NO_EGRESS_IP]
    named = _rows(_policy(egressGateway={"nodeSelector": gw, "egressIP": "192.168.10.240"}), local=w1)
    assert [(t.gateway_ip, t.egress_ip) for t in named.values()] == [("192.168.10.12", "192.168.10.240")]


def test_no_gateway_node_means_gateway_not_found() -> None:
    rows = _rows(_policy(egressGateway={"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "nope"}}}))
    assert [(t.gateway_ip, t.egress_ip) for t in rows.values()] == [(GATEWAY_NOT_FOUND, NO_EGRESS_IP)]


def test_several_matching_nodes_first_by_name_wins() -> None:
    rows = _rows(_policy(egressGateway={"nodeSelector": {"matchLabels": {"egress": "yes"}}}))
    assert [t.gateway_ip for t in rows.values()] == ["192.168.10.12"]


def test_excluded_and_in_cluster_prefixes_inside_a_destination() -> None:
    rows = _rows(_policy(destinationCIDRs=["0.0.0.0/0"], excludedCIDRs=["198.51.100.0/24"]), pods=[BOT])
    by_dest = {k.destination: t.gateway_ip for k, t in rows.items()}
    assert by_dest["0.0.0.0/0"] == "192.168.10.12"
    assert by_dest["198.51.100.0/24"] == EXCLUDED
    for in_cluster in ("10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24", "192.168.10.11/32", "192.168.10.13/32"):
        assert by_dest[in_cluster] == EXCLUDED, in_cluster


def test_a_destination_wholly_in_cluster_is_excluded() -> None:
    rows = _rows(_policy(destinationCIDRs=["10.0.2.7/32", "203.0.113.0/24"]), pods=[BOT])
    assert {k.destination: t.gateway_ip for k, t in rows.items()} == {
        "10.0.2.7/32": EXCLUDED, "203.0.113.0/24": "192.168.10.12"}


def test_namespace_and_node_selectors() -> None:
    prod = SourcePod("prod", "api", "10.0.3.9", "w3", {"app": "api"}, "uid-api")
    ns_policy = _policy(selectors=[{"namespaceSelector": {"matchLabels": {"team": "a"}}}])
    assert [k.source_ip for k in _rows(ns_policy, pods=[BOT, prod], namespaces={"prod": {"team": "a"}})] == [
        "10.0.3.9"]
    node_policy = _policy(selectors=[{"podSelector": {}, "nodeSelector": {"matchLabels": {"egress": "yes"}}}])
    assert [k.source_ip for k in _rows(node_policy, pods=[BOT, prod])] == ["10.0.3.9"]
    by_name = _policy(selectors=[{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "prod"}}}])
    assert [k.source_ip for k in _rows(by_name, pods=[BOT, prod])] == ["10.0.3.9"]


def test_k8s_source_prefix_in_pod_selector() -> None:
    p = _policy(selectors=[{"podSelector": {"matchLabels": {"k8s:class": "mediabot"}}}])
    assert [k.source_ip for k in _rows(p)] == ["10.0.1.5"]


def test_pods_without_ip_are_not_sources() -> None:
    assert _rows(_policy(), pods=[SourcePod("default", "new", "", "w1", {"org": "empire"})]) == {}


def test_egress_gateways_pin_each_pod_by_its_uid() -> None:
    gws = [{"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": n}}} for n in ("w2", "w3")]
    pods = [SourcePod("default", f"p{i}", f"10.0.1.{10 + i}", "w1", {"org": "empire"}, f"uid-{i}") for i in range(8)]
    rows = _rows(_policy(egressGateways=gws), pods=pods)
    want = {p.ip: ("192.168.10.12", "192.168.10.13")[zlib.crc32(p.uid.encode()) % 2] for p in pods}
    assert {k.source_ip: t.gateway_ip for k, t in rows.items()} == want
    assert len(set(want.values())) == 2  # both gateways are used by these eight
    assert rows == _rows(_policy(egressGateways=gws), pods=list(reversed(pods)))  # order does not matter


def test_first_policy_by_name_wins_a_shared_row() -> None:
    a = _policy("a-first", egressGateway={"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "w3"}}})
    b = _policy("b-second")
    rows = _rows(b, a, pods=[BOT])
    assert [(t.policy, t.gateway_ip) for t in rows.values()] == [("a-first", "192.168.10.13")]
