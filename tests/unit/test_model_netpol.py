"""Kubernetes NetworkPolicy validation and defaults."""

from __future__ import annotations

import copy

import pytest

from membrane.model.errors import ValidationError
from membrane.model.validate import validate_object


def netpol(**spec) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "np"},
            "spec": {"podSelector": {"matchLabels": {"role": "db"}}, **spec}}


def valid(obj) -> dict:
    return validate_object(obj, "np.yaml:doc 1")["spec"]


def error(obj) -> str:
    before = copy.deepcopy(obj)
    with pytest.raises(ValidationError) as exc:
        validate_object(obj, "np.yaml:doc 1")
    assert obj == before
    return str(exc.value).removeprefix("np.yaml:doc 1: ")


def test_policy_types_default_like_the_api_server():
    assert valid(netpol())["policyTypes"] == ["Ingress"]
    assert valid(netpol(ingress=[{}]))["policyTypes"] == ["Ingress"]
    assert valid(netpol(egress=[{}]))["policyTypes"] == ["Ingress", "Egress"]
    assert valid(netpol(policyTypes=[]))["policyTypes"] == ["Ingress"]
    assert valid(netpol(policyTypes=["Egress"]))["policyTypes"] == ["Egress"]


def test_pod_selector_required_but_may_be_empty():
    obj = netpol()
    del obj["spec"]["podSelector"]
    assert error(obj) == "spec.podSelector: Required value"
    assert valid(netpol(podSelector={}))["podSelector"] == {}
    assert error(netpol(podSelector={"matchLabels": {"k8s:app": "x"}})).startswith(
        'spec.podSelector.matchLabels: Invalid value: "k8s:app"'
    )


def test_policy_types_values():
    assert error(netpol(policyTypes=["ingress"])) == (
        'spec.policyTypes[0]: Unsupported value: "ingress": supported values: "Egress", "Ingress"'
    )
    assert error(netpol(policyTypes=["Ingress", "Ingress"])) == 'spec.policyTypes[1]: Duplicate value: "Ingress"'


def test_ports_default_protocol_and_accept_names_and_ranges():
    spec = valid(netpol(ingress=[{"ports": [{"port": 80}, {"port": "http", "protocol": "UDP"},
                                            {"port": 32000, "endPort": 32768}, {}]}]))
    assert spec["ingress"][0]["ports"] == [
        {"port": 80, "protocol": "TCP"}, {"port": "http", "protocol": "UDP"},
        {"port": 32000, "endPort": 32768, "protocol": "TCP"}, {"protocol": "TCP"},
    ]


def test_port_errors():
    def port_error(port: dict) -> str:
        return error(netpol(ingress=[{"ports": [port]}]))

    assert port_error({"port": 0}) == "spec.ingress[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
    assert port_error({"port": "80"}) == (
        'spec.ingress[0].ports[0].port: Invalid value: "80": must contain at least one letter (a-z); use a number'
    )
    assert port_error({"port": "Web"}).startswith('spec.ingress[0].ports[0].port: Invalid value: "Web"')
    assert port_error({"port": 80, "protocol": "ICMP"}).startswith('spec.ingress[0].ports[0].protocol: Unsupported value')
    assert port_error({"endPort": 90}) == (
        "spec.ingress[0].ports[0].endPort: Forbidden: may not be specified when `port` is not specified"
    )
    assert port_error({"port": "http", "endPort": 90}) == (
        "spec.ingress[0].ports[0].endPort: Forbidden: may not be specified when `port` is non-numeric"
    )
    assert port_error({"port": 100, "endPort": 90}) == (
        "spec.ingress[0].ports[0].endPort: Invalid value: 90: must be greater than or equal to `port`"
    )


def test_peers():
    assert valid(netpol(ingress=[{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"a": "b"}}}]}]))
    assert error(netpol(ingress=[{"from": [{}]}])) == (
        "spec.ingress[0].from[0]: Required value: must specify a peer (podSelector, namespaceSelector or ipBlock)"
    )
    assert error(netpol(egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}])) == (
        "spec.egress[0].to[0]: Forbidden: may not specify both ipBlock and another peer"
    )
    assert error(netpol(ingress=[{"to": []}])) == 'spec.ingress[0]: unknown field "spec.ingress[0].to"'
    assert error(netpol(egress=[{"from": []}])) == 'spec.egress[0]: unknown field "spec.egress[0].from"'
    assert error(netpol(ingress=[{"from": [{"podSelector": {"matchLabels": {"a": "b c"}}}]}])).startswith(
        'spec.ingress[0].from[0].podSelector.matchLabels.a: Invalid value: "b c"'
    )


def test_ip_block():
    def block_error(block: dict) -> str:
        return error(netpol(egress=[{"to": [{"ipBlock": block}]}]))

    assert block_error({}) == "spec.egress[0].to[0].ipBlock.cidr: Required value"
    assert block_error({"cidr": "10.0.0.1"}) == (
        'spec.egress[0].to[0].ipBlock.cidr: Invalid value: "10.0.0.1": must be a valid CIDR value, '
        "(e.g. 10.9.8.0/24 or 2001:db8::/64)"
    )
    assert block_error({"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}) == (
        'spec.egress[0].to[0].ipBlock.except[0]: Invalid value: "10.0.0.0/8": must be a strict subset of `cidr`'
    )
    assert block_error({"cidr": "10.0.0.0/8", "except": ["192.168.0.0/16"]}).endswith("must be a strict subset of `cidr`")
    assert block_error({"cidr": "10.0.0.0/8", "exclude": []}) == (
        'spec.egress[0].to[0].ipBlock: unknown field "spec.egress[0].to[0].ipBlock.exclude"'
    )


def test_unknown_spec_field():
    assert error(netpol(podSelecter={})) == 'spec: unknown field "spec.podSelecter"'
