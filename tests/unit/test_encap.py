"""Calico-style encapsulation's pure parts: the per-destination decision (CrossSubnet), the tunnel
plan per node, where the effective mode comes from (routingMode, IPPool, Helm), the Helm keys and
their refusals, and Calico's IPPool kind (validation, name lookup, ``get -o wide`` columns)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from membrane.cli.printers import render_table
from membrane.endpoint.routing import NodeInfo
from membrane.model.config import ClusterConfig
from membrane.model.encap import (
    Encapsulation,
    TunnelEntry,
    effective_encapsulation,
    encapsulate_toward,
    tunnel_plan,
)
from membrane.model.errors import ValidationError
from membrane.model.helm_release import effective_options, resolve, upgrade_blockers
from membrane.model.kinds import lookup_kind
from membrane.model.validate import validate_object

NODES = [NodeInfo("k8s-ctr", "192.168.10.100", ("10.0.0.0/24",), "192.168.10.0/24"),
         NodeInfo("k8s-w1", "192.168.10.101", ("10.0.1.0/24",), "192.168.10.0/24"),
         NodeInfo("k8s-w0", "192.168.20.100", ("10.0.2.0/24",), "192.168.20.0/24"),
         NodeInfo("new", "", ("10.0.4.0/24",))]


@pytest.mark.parametrize("mode,local,peer,expected", [
    ("Always", "192.168.10.0/24", "192.168.10.101", True),
    ("Never", "192.168.10.0/24", "192.168.20.100", False),
    ("CrossSubnet", "192.168.10.0/24", "192.168.10.101", False),
    ("CrossSubnet", "192.168.10.0/24", "192.168.20.100", True),
    ("CrossSubnet", "", "192.168.10.101", True),  # own subnet unknown: never send plain
])
def test_encapsulate_toward(mode: str, local: str, peer: str, expected: bool) -> None:
    assert encapsulate_toward(mode, local, peer) is expected


def test_unknown_mode_is_an_error() -> None:
    with pytest.raises(ValueError, match="'Sometimes' is not one of Always, CrossSubnet, Never"):
        encapsulate_toward("Sometimes", "192.168.10.0/24", "192.168.10.1")


def test_cross_subnet_plan_tunnels_only_the_other_subnet() -> None:
    plan = tunnel_plan("k8s-ctr", NODES, Encapsulation("CrossSubnet", "ipip"))
    assert plan == {"10.0.2.0/24": TunnelEntry("192.168.20.100", "ipip")}
    always = tunnel_plan("k8s-ctr", NODES, Encapsulation("Always", "vxlan"))
    assert always == {"10.0.1.0/24": TunnelEntry("192.168.10.101", "vxlan"),
                      "10.0.2.0/24": TunnelEntry("192.168.20.100", "vxlan")}
    assert tunnel_plan("k8s-ctr", NODES, Encapsulation()) == {}


def test_overhead_and_status_text() -> None:
    assert (Encapsulation("Always", "vxlan").overhead, Encapsulation("CrossSubnet", "ipip").overhead) == (50, 20)
    assert Encapsulation("Never", "ipip").overhead == 0
    assert (Encapsulation("Always", "ipip").describe(), Encapsulation("CrossSubnet", "vxlan").describe()) == (
        "ipip", "vxlan, CrossSubnet")


def _pool(name: str, cidr: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": name},
            "spec": {"cidr": cidr, **spec}}


def test_effective_encapsulation_precedence() -> None:
    pool = _pool("default-ipv4-ippool", "10.0.0.0/8", ipipMode="CrossSubnet")
    assert effective_encapsulation("native", "vxlan", "Never", "vxlan", ["10.0.0.0/8"], [pool]) == Encapsulation(
        "CrossSubnet", "ipip", "IPPool/default-ipv4-ippool")
    # a pool outside the cluster pool, or disabled, says nothing: the Helm values count
    other = _pool("elsewhere", "172.30.0.0/16", vxlanMode="Always")
    off = _pool("off", "10.0.0.0/16", vxlanMode="Always", disabled=True)
    assert effective_encapsulation("native", "vxlan", "Always", "ipip", ["10.0.0.0/8"], [other, off]) == Encapsulation(
        "Always", "ipip", "helm")
    assert effective_encapsulation("tunnel", "vxlan", "Never", "vxlan", ["10.0.0.0/8"], [pool]).source == "routingMode"


def test_helm_keys() -> None:
    cfg = resolve({"encapsulation": {"mode": "CrossSubnet", "type": "ipip"}}).config
    assert (cfg.encapsulation_mode, cfg.encapsulation_type) == ("CrossSubnet", "ipip")
    options = dict(effective_options(cfg.to_dict()))
    assert (options["EncapsulationMode"], options["EncapsulationType"]) == ("CrossSubnet", "ipip")


@pytest.mark.parametrize("values,message", [
    ({"encapsulation": {"mode": "Sometimes"}}, "encapsulation.mode 'Sometimes' is not one of Always, CrossSubnet, Never"),
    ({"encapsulation": {"type": "gre"}}, "encapsulation.type 'gre' is not one of vxlan, ipip"),
    ({"routingMode": "tunnel", "encapsulation": {"mode": "CrossSubnet"}},
     "encapsulation.mode=CrossSubnet applies to routingMode=native"),
])
def test_bad_encapsulation_values_are_refused(values: dict, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        resolve(values)
    assert message in str(err.value), str(err.value)


def test_a_running_lab_cannot_switch_encapsulation() -> None:
    blockers = upgrade_blockers(ClusterConfig(), ClusterConfig(encapsulation_mode="Always", encapsulation_type="ipip"))
    assert [b.split(":")[0] for b in blockers] == ["encapsulation.mode", "encapsulation.type"], blockers


def test_calico_ippool_validation() -> None:
    ok = validate_object(_pool("p", "10.0.0.0/8", vxlanMode="CrossSubnet", natOutgoing=True), "pool.yaml")
    assert ok["spec"]["ipipMode"] == "Never" and ok["spec"]["blockSize"] == 26
    for spec, message in (({"ipipMode": "Always", "vxlanMode": "Always"}, "cannot both be enabled"),
                          ({"ipipMode": "Sometimes"}, "spec.ipipMode: Unsupported value"),
                          ({"blockSize": 12}, "spec.blockSize"),
                          ({"encapsulation": "x"}, "encapsulation")):
        with pytest.raises(ValidationError) as err:
            validate_object(_pool("p", "10.0.0.0/8", **spec), "pool.yaml")
        assert message in str(err.value) and "pool.yaml" in str(err.value), str(err.value)
    with pytest.raises(ValidationError, match="spec.cidr"):
        validate_object(_pool("p", "10.0.0/8"), "pool.yaml")


def test_calico_ippool_names_and_columns() -> None:
    assert lookup_kind("ippools.crd.projectcalico.org").kind == "IPPool"
    assert lookup_kind("IPPool").kind == "IPPool"
    assert lookup_kind("ippools").kind == "CiliumLoadBalancerIPPool"  # unchanged
    pool = validate_object(_pool("default-ipv4-ippool", "10.0.0.0/8", ipipMode="CrossSubnet", natOutgoing=True),
                           "pool.yaml")
    wide = render_table("IPPool", [pool], wide=True, all_namespaces=False, now=datetime.now(UTC)).splitlines()
    assert wide[0].split() == ["NAME", "CIDR", "AGE", "IPIPMODE", "VXLANMODE", "NATOUTGOING", "DISABLED"]
    assert wide[1].split()[:2] == ["default-ipv4-ippool", "10.0.0.0/8"]
    assert wide[1].split()[3:] == ["CrossSubnet", "Never", "true", "false"]


def test_bench_rows_name_the_routing() -> None:
    from bench.datapath import routing_label

    assert routing_label([]) == ""
    assert routing_label(["routingMode=tunnel"]) == " [VXLAN tunnel]"
    assert routing_label(["encapsulation.mode=Always", "encapsulation.type=ipip"]) == " [BPF IPIP Always]"
    assert routing_label(["bpf.hostLegacyRouting=true"]) == " [bpf.hostLegacyRouting=true]"


def test_a_pool_needing_more_headroom_than_the_pods_got_is_not_followed() -> None:
    from membrane.model.encap import fit_headroom

    pool_ipip = Encapsulation("Always", "ipip", "IPPool/p")
    helm = Encapsulation("Never", "vxlan", "helm")
    assert fit_headroom(pool_ipip, helm, None) == (pool_ipip, "")  # at start: the pods get what it needs
    assert fit_headroom(pool_ipip, helm, 20) == (pool_ipip, "")  # an ipip lab may go Always
    enc, why = fit_headroom(pool_ipip, helm, 0)
    assert enc == helm and "IPPool/p (ipip Always) not followed: it needs 20 bytes" in why
