"""CiliumEgressGatewayPolicy validation: the seeds' manifests apply, bad input is refused with the field."""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path
from typing import Any

import pytest

from membrane.model.egress_gw import parse_egress_policy
from membrane.model.errors import ValidationError
from membrane.model.loader import load_located
from membrane.model.validate import validate_object

SEEDS = Path("/work/shared/seed-data/manifests")


def _policy(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "selectors": [{"podSelector": {"matchLabels": {"org": "empire"}}}],
        "destinationCIDRs": ["0.0.0.0/0"],
        "egressGateway": {"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "w2"}}},
    }
    base.update(spec)
    return {"apiVersion": "cilium.io/v2", "kind": "CiliumEgressGatewayPolicy", "metadata": {"name": "egp"},
            "spec": {k: v for k, v in base.items() if v is not None}}


def _error(obj: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as exc:
        validate_object(obj, "egp.yaml")
    return str(exc.value)


@pytest.mark.skipif(not SEEDS.is_dir(), reason="seed manifests not present")
@pytest.mark.parametrize("name", ["egress-gateway.yaml", "egress-gateway-all.yaml"])
def test_the_seed_policies_validate_unchanged(name: str) -> None:
    docs = [d for d in load_located((SEEDS / name).read_text(), name) if d.obj.get("kind") == "CiliumEgressGatewayPolicy"]
    assert docs
    for doc in docs:
        out = validate_object(doc.obj, doc.where)
        policy = parse_egress_policy(out)
        assert policy.name == "egress-sample"
        assert policy.gateways[0].node_selector.matches({"kubernetes.io/hostname": "k8s-w2"})
        assert "namespace" not in out["metadata"]  # cluster-scoped


def test_parsed_form() -> None:
    obj = _policy(destinationCIDRs=["192.168.20.0/24", "10.1.0.0/16"], excludedCIDRs=["192.168.20.128/25"],
                  egressGateway={"nodeSelector": {"matchLabels": {"gw": "yes"}}, "egressIP": "192.168.10.240"})
    p = parse_egress_policy(validate_object(obj, "x"))
    assert p.destinations == (ipaddress.IPv4Network("192.168.20.0/24"), ipaddress.IPv4Network("10.1.0.0/16"))
    assert p.excluded == (ipaddress.IPv4Network("192.168.20.128/25"),)
    assert p.gateways[0].egress_ip == "192.168.10.240" and p.gateways[0].interface == ""


def test_egress_gateways_override_egress_gateway() -> None:
    gws = [{"nodeSelector": {"matchLabels": {"n": str(i)}}, "interface": "eth1"} for i in range(3)]
    p = parse_egress_policy(validate_object(_policy(egressGateways=gws), "x"))
    assert len(p.gateways) == 3 and all(g.interface == "eth1" for g in p.gateways)


def test_egress_ip_and_interface_together_are_refused() -> None:
    gw = {"nodeSelector": {"matchLabels": {"a": "b"}}, "egressIP": "10.0.0.5", "interface": "eth1"}
    msg = _error(_policy(egressGateway=gw))
    assert msg.startswith("egp.yaml: spec.egressGateway:")
    assert "egressIP and interface are mutually exclusive" in msg
    assert "spec.egressGateways[1]:" in _error(_policy(egressGateways=[{"nodeSelector": {}}, gw]))


@pytest.mark.parametrize("spec,where,why", [
    ({"destinationCIDRs": ["10.0.0.0/33"]}, "spec.destinationCIDRs[0]", "must be a valid CIDR value"),
    ({"destinationCIDRs": ["10.0.0.1"]}, "spec.destinationCIDRs[0]", "must be a valid CIDR value"),
    ({"destinationCIDRs": ["fd00::/64"]}, "spec.destinationCIDRs[0]", "IPv6 is not enabled"),
    ({"destinationCIDRs": ["10.0.0.0/8", "10.1.0.0/16"]}, "spec.destinationCIDRs[1]",
     "overlaps spec.destinationCIDRs[0] (10.0.0.0/8)"),
    ({"destinationCIDRs": ["10.0.0.0/8", "10.0.0.0/8"]}, "spec.destinationCIDRs[1]", "duplicates"),
    ({"destinationCIDRs": []}, "spec.destinationCIDRs", "Required value"),
    ({"destinationCIDRs": None}, "spec.destinationCIDRs", "Required value"),
    ({"destinationCIDRs": ["10.0.0.0/8"], "excludedCIDRs": ["192.168.0.0/24"]}, "spec.excludedCIDRs[0]",
     "is not inside any of spec.destinationCIDRs"),
    ({"excludedCIDRs": ["10.0.0.0/8", "10.2.0.0/16"]}, "spec.excludedCIDRs[1]", "overlaps"),
    ({"selectors": []}, "spec.selectors", "Required value"),
    ({"selectors": [{"nodeSelector": {}}]}, "spec.selectors[0].podSelector", "needs podSelector or namespaceSelector"),
    ({"selectors": [{"podSelector": {"matchExpressions": [{"key": "a", "operator": "Is"}]}}]},
     "spec.selectors[0].podSelector.matchExpressions[0].operator", "Unsupported value"),
    ({"egressGateway": None}, "spec.egressGateway", "needs egressGateway or egressGateways"),
    ({"egressGateway": {"egressIP": "10.0.0.1"}}, "spec.egressGateway.nodeSelector", "Required value"),
    ({"egressGateway": {"nodeSelector": {}, "egressIP": "10.0.0.300"}}, "spec.egressGateway.egressIP",
     "must be a valid IP address"),
    ({"egressGateway": {"nodeSelector": {}, "egressIP": "fd00::1"}}, "spec.egressGateway.egressIP", "IPv6"),
    ({"egressGateways": [{"nodeSelector": {}}] * 65}, "spec.egressGateways", "65"),
    ({"bogus": 1}, "spec", "bogus"),
])
def test_bad_input_names_the_field(spec: dict[str, Any], where: str, why: str) -> None:
    msg = _error(_policy(**spec))
    assert f"egp.yaml: {where}:" in msg, msg
    assert why in msg, msg


def test_validation_never_changes_the_input() -> None:
    obj = _policy(destinationCIDRs=["10.0.0.0/8", "10.1.0.0/16"])
    before = copy.deepcopy(obj)
    _error(obj)
    assert obj == before
