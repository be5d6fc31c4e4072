from __future__ import annotations

import pytest

from membrane.lab.topology import build_topology
from membrane.model.errors import ValidationError


def test_default_three_nodes_like_the_vagrant_labs() -> None:
    topo = build_topology()
    assert [(n.name, n.ip) for n in topo.nodes] == [
        ("k8s-ctr", "192.168.10.100/24"), ("k8s-w1", "192.168.10.101/24"), ("k8s-w2", "192.168.10.102/24")]
    assert topo.config.ipam_mode == "cluster-pool"
    assert topo.config.cluster_pool_ipv4_pod_cidr_list == ["10.0.0.0/8"]


def test_set_overrides_and_kubernetes_mode_derives_node_cidrs() -> None:
    topo = build_topology(2, settings=["ipam.mode=kubernetes", "clusterPoolIPv4PodCIDRList=10.244.0.0/16"])
    assert [n.pod_cidr for n in topo.nodes] == ["10.244.0.0/24", "10.244.1.0/24"]


@pytest.mark.parametrize("setting, message", [
    ("ipam.mode=eni", "ipam.mode 'eni' not supported"),
    ("nope=1", "nope: unknown key, not in Cilium's chart"),
    ("clusterPoolIPv4PodCIDRList=10.0.0.0/33", "clusterPoolIPv4PodCIDRList: '10.0.0.0/33'"),
    ("clusterPoolIPv4MaskSize=abc", "clusterPoolIPv4MaskSize=abc: expected an integer"),
    ("autoDirectNodeRoutes=maybe", "expected true or false"),
])
def test_bad_settings_are_named(setting: str, message: str) -> None:
    with pytest.raises(ValidationError, match=None) as err:
        build_topology(settings=[setting])
    assert message in str(err.value)


def test_config_file_with_router_and_two_subnets() -> None:
    text = """
nodes:
  - {name: k8s-ctr, ip: 192.168.10.100/24}
  - {name: k8s-w1, ip: 192.168.20.101/24, podCIDR: 10.1.1.0/24}
router: {name: router, ips: [192.168.10.200/24, 192.168.20.200/24]}
settings: {ipam.mode: kubernetes}
"""
    topo = build_topology(config_text=text, config_source="lab.yaml")
    assert len(topo.subnets) == 2
    assert topo.nodes[1].pod_cidr == "10.1.1.0/24"
    assert topo.gateway_for(topo.nodes[0], topo.nodes[1]) == "192.168.10.200"


@pytest.mark.parametrize("text, message", [
    ("nodes: [{name: a, ip: 192.168.10.1/24}, {name: b, ip: 192.168.20.1/24}]", "add a router"),
    ("nodes: [{name: a, ip: 192.168.10.1/24}, {name: a, ip: 192.168.10.2/24}]", "nodes[1].name: duplicate"),
    ("nodes: [{name: a, ip: 192.168.10.1}]", "give a prefix length"),
    ("nodes: [{name: a, ip: 192.168.10.1/24, colour: red}]", "nodes[0]: unknown field 'colour'"),
    ("nodez: []", "unknown field 'nodez'"),
    ("nodes: [{name: A_B, ip: 192.168.10.1/24}]", "nodes[0].name"),
    ("[1, 2", "invalid YAML"),
])
def test_bad_config_files_are_located(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        build_topology(config_text=text, config_source="lab.yaml")
    assert str(err.value).startswith("lab.yaml")
    assert message in str(err.value)


def test_extra_ips_give_a_node_more_underlay_addresses() -> None:
    text = """
nodes:
  - {name: k8s-ctr, ip: 192.168.10.100/24}
  - {name: k8s-w1, ip: 192.168.10.101/24, extraIPs: [192.168.10.240/24, 192.168.10.241/24]}
"""
    topo = build_topology(config_text=text)
    assert topo.nodes[1].extra_ips == ["192.168.10.240/24", "192.168.10.241/24"]
    again = type(topo).from_dict(topo.to_dict())
    assert [n.extra_ips for n in again.nodes] == [[], ["192.168.10.240/24", "192.168.10.241/24"]]


@pytest.mark.parametrize("extra, message", [
    ("[192.168.10.240]", "nodes[0].extraIPs[0]: '192.168.10.240': give a prefix length"),
    ("[192.168.10.100/24]", "nodes[0].extraIPs[0]: duplicate address 192.168.10.100"),
    ("[300.1.1.1/24]", "nodes[0].extraIPs[0]: '300.1.1.1/24'"),
    ("192.168.10.240/24", "nodes[0].extraIPs: expected a list"),
])
def test_bad_extra_ips_are_named(extra: str, message: str) -> None:
    text = f"nodes:\n  - {{name: a, ip: 192.168.10.100/24, extraIPs: {extra}}}\n  - {{name: b, ip: 192.168.10.101/24}}\n"
    with pytest.raises(ValidationError) as err:
        build_topology(config_text=text)
    assert message in str(err.value), str(err.value)
