"""CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy structural validation."""

from __future__ import annotations

import copy

import pytest

from membrane.model.errors import ValidationError
from membrane.model.policy import ENTITIES
from membrane.model.policy_ports import icmp_type_number
from membrane.model.validate import validate_object


def cnp(spec=None, *, kind="CiliumNetworkPolicy", **top) -> dict:
    obj = {"apiVersion": "cilium.io/v2", "kind": kind, "metadata": {"name": "p"}, **top}
    if spec is not None:
        obj["spec"] = spec
    return obj


def rule(**fields) -> dict:
    return {"endpointSelector": {"matchLabels": {"app": "web"}}, **fields}


def valid(obj) -> dict:
    return validate_object(obj, "p.yaml:doc 1")


def error(obj) -> str:
    before = copy.deepcopy(obj)
    with pytest.raises(ValidationError) as exc:
        validate_object(obj, "p.yaml:doc 1")
    assert obj == before
    return str(exc.value).removeprefix("p.yaml:doc 1: ")


def ingress_error(item: dict) -> str:
    return error(cnp(rule(ingress=[item])))


def egress_error(item: dict) -> str:
    return error(cnp(rule(egress=[item])))


def test_minimal_policies():
    out = valid(cnp(rule(ingress=[{}])))
    assert out["spec"] == {"endpointSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}]}
    assert out["metadata"]["namespace"] == "default"
    assert valid(cnp(rule(egressDeny=[{"toEntities": ["world"]}])))


def test_spec_or_specs_required():
    assert error(cnp()) == "spec: Required value: a policy needs `spec` (one rule) or `specs` (a list of rules)"
    assert error(cnp(specs=[])) == "spec: Required value: a policy needs `spec` (one rule) or `specs` (a list of rules)"
    assert error(cnp(specs={})) == "specs: Invalid value: {}: must be a list, not object"
    assert error(cnp([])) == "spec: Invalid value: []: must be an object, not list"
    out = valid(cnp(specs=[rule(ingress=[{}]), rule(egress=[{}])]))
    assert len(out["specs"]) == 2 and "spec" not in out
    both = valid(cnp(rule(ingress=[{}]), specs=[rule(egress=[{}])]))
    assert "spec" in both and "specs" in both


def test_errors_in_specs_name_the_rule():
    assert error(cnp(specs=[rule(ingress=[{}]), rule()])).startswith(
        "specs[1]: rule must have at least one of ingress, ingressDeny, egress or egressDeny"
    )
    assert error(cnp(specs=[rule(ingress=[{"fromEntities": ["wrld"]}])])).startswith(
        'specs[0].ingress[0].fromEntities[0]: Unsupported value: "wrld"'
    )


def test_rule_without_direction_items_is_rejected():
    msg = ("spec: rule must have at least one of ingress, ingressDeny, egress or egressDeny "
           "(use `ingress: [{}]` for a default-deny rule)")
    assert error(cnp(rule())) == msg
    assert error(cnp(rule(ingress=[], egress=[]))) == msg
    assert error(cnp(rule(description="nothing"))) == msg


def test_subject_selector():
    assert error(cnp({"ingress": [{}]})) == (
        "spec.endpointSelector: Required value: a rule must select its subjects with endpointSelector"
    )
    assert error(cnp({"nodeSelector": {}, "ingress": [{}]})) == (
        "spec.nodeSelector: Forbidden: only allowed in CiliumClusterwideNetworkPolicy"
    )
    ccnp = "CiliumClusterwideNetworkPolicy"
    assert valid(cnp({"nodeSelector": {"matchLabels": {"role": "worker"}}, "ingress": [{}]}, kind=ccnp))
    assert error(cnp({"nodeSelector": {}, "endpointSelector": {}, "ingress": [{}]}, kind=ccnp)) == (
        "spec.nodeSelector: Forbidden: may not be combined with endpointSelector"
    )
    assert error(cnp({"ingress": [{}]}, kind=ccnp)) == (
        "spec.endpointSelector: Required value: a rule must select its subjects with endpointSelector or nodeSelector"
    )
    assert error(cnp(rule(ingress=[{}], endpointSelector={"matchLabels": {"k8:app": "x"}}))).startswith(
        "spec.endpointSelector.matchLabels: Invalid value: \"k8:app\": unknown label source 'k8'"
    )


def test_source_prefixed_selectors_are_accepted():
    sel = {"matchLabels": {"k8s:io.kubernetes.pod.namespace": "kube-system", "any:app": "x", "reserved:host": ""},
           "matchExpressions": [{"key": "k8s:tier", "operator": "Exists"}]}
    assert valid(cnp(rule(ingress=[{"fromEndpoints": [sel]}], endpointSelector=sel)))


def test_unknown_fields_at_every_level():
    assert error(cnp(rule(ingress=[{}], ingres=[{}]))) == 'spec: unknown field "spec.ingres"'
    assert ingress_error({"fromEndpoint": [{}]}) == 'spec.ingress[0]: unknown field "spec.ingress[0].fromEndpoint"'
    assert ingress_error({"toEndpoints": [{}]}) == 'spec.ingress[0]: unknown field "spec.ingress[0].toEndpoints"'
    assert egress_error({"fromEntities": ["all"]}) == 'spec.egress[0]: unknown field "spec.egress[0].fromEntities"'
    assert ingress_error({"toPorts": [{"ports": [{"port": "80", "proto": "TCP"}]}]}) == (
        'spec.ingress[0].toPorts[0].ports[0]: unknown field "spec.ingress[0].toPorts[0].ports[0].proto"'
    )
    assert ingress_error({"toPorts": [{"ports": [{"port": "80"}], "rules": {"http": [{"verb": "GET"}]}}]}) == (
        'spec.ingress[0].toPorts[0].rules.http[0]: unknown field "spec.ingress[0].toPorts[0].rules.http[0].verb"'
    )
    assert error(cnp(rule(ingress=[{}], enableDefaultDeny={"ingress": False, "both": True}))) == (
        'spec.enableDefaultDeny: unknown field "spec.enableDefaultDeny.both"'
    )
    assert ingress_error({"fromCIDRSet": [{"cidr": "10.0.0.0/8", "exclude": []}]}) == (
        'spec.ingress[0].fromCIDRSet[0]: unknown field "spec.ingress[0].fromCIDRSet[0].exclude"'
    )


def test_all_known_rule_fields_are_accepted():
    spec = rule(
        description="d", labels=[{"key": "k", "value": "v", "source": "user"}, "user:x=y"],
        log={"value": "audit"}, enableDefaultDeny={"ingress": True, "egress": False},
        ingress=[
            {"fromEndpoints": [{}], "toPorts": [{"ports": [{"port": "80"}]}], "authentication": {"mode": "required"}},
            {"fromRequires": [{"matchLabels": {"env": "prod"}}], "fromEntities": ["cluster"]},
            {"fromCIDR": ["10.0.0.0/8", "192.0.2.1"]},
            {"fromCIDRSet": [{"cidrGroupRef": "group"}]},
            {"fromCIDRSet": [{"cidrGroupSelector": {"matchLabels": {"a": "b"}}}]},
            {"fromNodes": [{"matchLabels": {"role": "x"}}]},
            {"icmps": [{"fields": [{"type": 8}, {"family": "IPv6", "type": "EchoRequest"}]}]},
        ],
        ingressDeny=[{"fromEntities": ["world"], "toPorts": [{"ports": [{"port": "22", "protocol": "TCP"}]}]}],
        egress=[
            {"toServices": [{"k8sService": {"serviceName": "db", "namespace": "x"}}]},
            {"toServices": [{"k8sServiceSelector": {"selector": {"matchLabels": {"a": "b"}}}}]},
            {"toFQDNs": [{"matchName": "cilium.io"}, {"matchPattern": "*.cilium.io"}],
             "toPorts": [{"ports": [{"port": "443"}], "serverNames": ["cilium.io"]}]},
            {"toEndpoints": [{}], "toPorts": [{"ports": [{"port": "53", "protocol": "ANY"}],
                                                 "rules": {"dns": [{"matchPattern": "*"}]}}]},
            {"toPorts": [{"ports": [{"port": "9092"}], "rules": {"kafka": [{"role": "produce", "topic": "t"}]}}]},
            {"toPorts": [{"ports": [{"port": "6379"}], "rules": {"l7proto": "r2d2", "l7": [{"cmd": "READ"}]}}]},
            {"toPorts": [{"ports": [{"port": "443"}], "terminatingTLS": {"secret": {"name": "s"}},
                          "originatingTLS": {"secret": {"name": "ca", "namespace": "x"}, "trustedCA": "ca.crt"},
                          "rules": {"http": [{"headerMatches": [{"name": "X", "mismatch": "ADD", "value": "1"}],
                                              "headers": ["X-Y: 1"], "host": "a", "path": "/", "method": "GET"}]}}]},
            {"toPorts": [{"ports": [{"port": "80"}], "listener": {"envoyConfig": {"kind": "CiliumEnvoyConfig",
                                                                                   "name": "e"}, "name": "l"}}]},
        ],
        egressDeny=[{"toCIDRSet": [{"cidr": "169.254.0.0/16"}]}],
    )
    assert valid(cnp(spec))["spec"] == spec


def test_entities():
    for entity in ENTITIES:
        assert valid(cnp(rule(egress=[{"toEntities": [entity]}])))
    assert egress_error({"toEntities": ["World"]}).startswith('spec.egress[0].toEntities[0]: Unsupported value: "World"')


def test_cidrs():
    assert ingress_error({"fromCIDR": ["10.0.0.0/33"]}) == (
        'spec.ingress[0].fromCIDR[0]: Invalid value: "10.0.0.0/33": must be a valid CIDR value, '
        "(e.g. 10.9.8.0/24 or 2001:db8::/64)"
    )
    assert ingress_error({"fromCIDR": ["my-net"]}).startswith('spec.ingress[0].fromCIDR[0]: Invalid value: "my-net"')
    assert egress_error({"toCIDRSet": [{"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}]}) == (
        "spec.egress[0].toCIDRSet[0].except[0]: Invalid value: \"11.0.0.0/16\": must be contained in cidr '10.0.0.0/8'"
    )
    assert egress_error({"toCIDRSet": [{"cidr": "10.0.0.0/8", "except": ["fd00::/8"]}]}).startswith(
        'spec.egress[0].toCIDRSet[0].except[0]: Invalid value: "fd00::/8": must be contained'
    )
    assert egress_error({"toCIDRSet": [{"cidr": "10.0.0.0/8", "except": ["10.0.0.0/300"]}]}).startswith(
        'spec.egress[0].toCIDRSet[0].except[0]: Invalid value: "10.0.0.0/300": must be a valid CIDR'
    )
    assert egress_error({"toCIDRSet": [{"except": ["10.0.0.0/16"]}]}) == (
        "spec.egress[0].toCIDRSet[0].cidr: Required value: exactly one of cidr, cidrGroupRef or cidrGroupSelector "
        "must be set"
    )
    assert egress_error({"toCIDRSet": [{"cidr": "10.0.0.0/8", "cidrGroupRef": "g"}]}).startswith(
        "spec.egress[0].toCIDRSet[0]: Invalid value: "
    )
    assert valid(cnp(rule(egress=[{"toCIDRSet": [{"cidr": "2001:db8::/32", "except": ["2001:db8:1::/48"]}]}])))


def test_l3_peer_kinds_cannot_be_combined():
    assert ingress_error({"fromEndpoints": [{}], "fromCIDR": ["10.0.0.0/8"]}) == (
        "spec.ingress[0]: combining fromEndpoints and fromCIDR is not supported yet"
    )
    assert egress_error({"toFQDNs": [{"matchName": "a.b"}], "toEntities": ["world"]}) == (
        "spec.egress[0]: combining toEntities and toFQDNs is not supported yet"
    )
    # an empty list is not a peer
    assert valid(cnp(rule(ingress=[{"fromEndpoints": [{}], "fromCIDR": []}])))
    # fromRequires is not an L3 peer kind
    assert valid(cnp(rule(ingress=[{"fromEndpoints": [{}], "fromRequires": [{}]}])))


def test_icmps_and_to_ports_are_exclusive():
    assert ingress_error({"icmps": [{"fields": [{"type": 8}]}], "toPorts": [{"ports": [{"port": "80"}]}]}) == (
        "spec.ingress[0]: icmps and toPorts cannot be used in the same rule; use separate rules"
    )


def test_ports():
    def port_error(port: dict) -> str:
        return ingress_error({"toPorts": [{"ports": [port]}]})

    out = valid(cnp(rule(ingress=[{"toPorts": [{"ports": [{"port": 80, "protocol": "TCP"}]}]}])))
    assert out["spec"]["ingress"][0]["toPorts"][0]["ports"][0]["port"] == "80"
    assert valid(cnp(rule(ingress=[{"toPorts": [{"ports": [{"port": "http"}, {"port": "0"}, {}]}]}])))
    assert valid(cnp(rule(ingress=[{"toPorts": [{"ports": [{"port": "8000", "endPort": 8080}]}]}])))
    assert port_error({"port": "70000"}) == (
        "spec.ingress[0].toPorts[0].ports[0].port: Invalid value: \"70000\": must be between 0 and 65535, inclusive"
    )
    assert port_error({"port": "my_port"}).startswith(
        'spec.ingress[0].toPorts[0].ports[0].port: Invalid value: "my_port": must be a port number (0-65535) or a '
        "port name: "
    )
    assert port_error({"port": "8080", "endPort": 8000}) == (
        "spec.ingress[0].toPorts[0].ports[0].endPort: Invalid value: 8000: must be greater than or equal to port (8080)"
    )
    assert port_error({"port": "80", "protocol": "GRE"}) == (
        'spec.ingress[0].toPorts[0].ports[0].protocol: Unsupported value: "GRE": supported values: '
        '"ANY", "ICMP", "SCTP", "TCP", "UDP"'
    )
    assert port_error({"port": "80", "protocol": "udp"}).startswith(
        'spec.ingress[0].toPorts[0].ports[0].protocol: Unsupported value: "udp"'
    )
    assert valid(cnp(rule(ingress=[{"toPorts": [{"ports": [{"port": "80", "protocol": ""}]}]}])))
    too_many = [{"port": str(p)} for p in range(1, 42)]
    assert ingress_error({"toPorts": [{"ports": too_many}]}) == (
        "spec.ingress[0].toPorts[0].ports: Too many: 41: must have at most 40 items"
    )


def test_deny_port_rules_have_no_l7():
    obj = cnp(rule(ingressDeny=[{"toPorts": [{"ports": [{"port": "80"}], "rules": {"http": [{}]}}]}]))
    assert error(obj) == 'spec.ingressDeny[0].toPorts[0]: unknown field "spec.ingressDeny[0].toPorts[0].rules"'
    obj = cnp(rule(egressDeny=[{"toFQDNs": [{"matchName": "a.b"}]}]))
    assert error(obj) == 'spec.egressDeny[0]: unknown field "spec.egressDeny[0].toFQDNs"'
    obj = cnp(rule(ingressDeny=[{"authentication": {"mode": "required"}}]))
    assert error(obj) == 'spec.ingressDeny[0]: unknown field "spec.ingressDeny[0].authentication"'


def test_l7_rules():
    def rules_error(rules: dict, port: str = "80") -> str:
        return egress_error({"toPorts": [{"ports": [{"port": port}], "rules": rules}]})

    assert rules_error({"http": [{}], "dns": [{"matchName": "a"}]}) == (
        'spec.egress[0].toPorts[0].rules: Invalid value: ["dns", "http"]: multiple L7 protocol rule types '
        "specified in single rule"
    )
    assert rules_error({"dns": [{"matchName": "a.b"}]}, port="0") == (
        'spec.egress[0].toPorts[0].ports: Invalid value: [{"port": "0"}]: DNS rules need an explicit port (e.g. 53)'
    )
    assert rules_error({"kafka": [{"role": "write"}]}) == (
        'spec.egress[0].toPorts[0].rules.kafka[0].role: Unsupported value: "write": supported values: '
        '"consume", "produce"'
    )
    assert rules_error({"kafka": [{"role": "produce", "apiKey": "fetch"}]}) == (
        'spec.egress[0].toPorts[0].rules.kafka[0].apiKey: Invalid value: "fetch": cannot be combined with role'
    )
    assert rules_error({"l7": [{"a": "b"}]}).startswith("spec.egress[0].toPorts[0].rules.l7: Invalid value:")
    assert rules_error({"http": [{"headerMatches": [{"name": "x", "mismatch": "DROP"}]}]}).startswith(
        'spec.egress[0].toPorts[0].rules.http[0].headerMatches[0].mismatch: Unsupported value: "DROP"'
    )
    assert rules_error({"http": [{"method": 1}]}).startswith(
        "spec.egress[0].toPorts[0].rules.http[0].method: Invalid value: 1: must be a string"
    )


def test_fqdn_selectors():
    assert egress_error({"toFQDNs": [{"matchName": "a.b", "matchPattern": "*.b"}]}).startswith(
        "spec.egress[0].toFQDNs[0]: Invalid value: "
    )
    assert egress_error({"toFQDNs": [{}]}) == (
        "spec.egress[0].toFQDNs[0]: Invalid value: {}: one of matchName or matchPattern must be set"
    )
    assert egress_error({"toFQDNs": [{"matchName": "*.cilium.io"}]}) == (
        'spec.egress[0].toFQDNs[0].matchName: Invalid value: "*.cilium.io": may only contain '
        "a-z, A-Z, 0-9, '-', '_' and '.'"
    )
    assert egress_error({"toFQDNs": [{"matchPattern": "cilium io"}]}).startswith(
        'spec.egress[0].toFQDNs[0].matchPattern: Invalid value: "cilium io": may only contain'
    )
    assert egress_error({"toFQDNs": [{"matchName": "a" * 256}]}).endswith("must be no more than 255 characters")


def test_icmps():
    assert ingress_error({"icmps": [{"fields": [{"type": 256}]}]}) == (
        "spec.ingress[0].icmps[0].fields[0].type: Invalid value: 256: must be between 0 and 255, inclusive"
    )
    assert ingress_error({"icmps": [{"fields": [{"type": "Ping"}]}]}).startswith(
        'spec.ingress[0].icmps[0].fields[0].type: Unsupported value: "Ping"'
    )
    assert ingress_error({"icmps": [{"fields": [{"family": "IPv6", "type": "Echo"}]}]}).startswith(
        'spec.ingress[0].icmps[0].fields[0].type: Unsupported value: "Echo"'
    )
    assert ingress_error({"icmps": [{"fields": [{"family": "IPv7", "type": 8}]}]}).startswith(
        'spec.ingress[0].icmps[0].fields[0].family: Unsupported value: "IPv7"'
    )
    assert ingress_error({"icmps": [{"fields": [{"family": "IPv4"}]}]}) == (
        "spec.ingress[0].icmps[0].fields[0].type: Required value: an ICMP type number (0-255) or name"
    )
    assert icmp_type_number("IPv4", "EchoRequest") == 8
    assert icmp_type_number("IPv6", "EchoRequest") == 128
    assert icmp_type_number("IPv4", 3) == 3


def test_authentication_and_services_and_groups():
    assert ingress_error({"authentication": {"mode": "strict"}}).startswith(
        'spec.ingress[0].authentication.mode: Unsupported value: "strict"'
    )
    assert ingress_error({"authentication": {}}) == "spec.ingress[0].authentication.mode: Required value"
    assert egress_error({"toServices": [{}]}) == (
        "spec.egress[0].toServices[0]: Invalid value: {}: exactly one of k8sService or k8sServiceSelector must be set"
    )
    assert egress_error({"toServices": [{"k8sService": {"namespace": "x"}}]}) == (
        "spec.egress[0].toServices[0].k8sService.serviceName: Required value"
    )
    assert egress_error({"toGroups": [{"azure": {}}]}) == (
        'spec.egress[0].toGroups[0]: unknown field "spec.egress[0].toGroups[0].azure"'
    )


def test_groups_are_refused_clearly_in_both_directions():
    why = ("Forbidden: selects cloud-provider groups (AWS security groups), which only Cilium's cloud-provider "
           "integration (ENI IPAM) resolves; there is no cloud provider here, use toCIDRSet or toEndpoints")
    aws = {"aws": {"securityGroupsIds": ["sg-1"], "region": "eu-west-1"}}
    assert egress_error({"toGroups": [aws]}) == f"spec.egress[0].toGroups[0]: {why}"
    assert error(cnp(rule(ingress=[{"fromGroups": [aws]}]))) == f"spec.ingress[0].fromGroups[0]: {why}"


def test_rule_metadata_fields():
    assert error(cnp(rule(ingress=[{}], description=5))).startswith("spec.description: Invalid value: 5")
    assert error(cnp(rule(ingress=[{}], labels=[{"value": "x"}]))) == "spec.labels[0].key: Required value"
    assert error(cnp(rule(ingress=[{}], enableDefaultDeny={"ingress": "no"}))).startswith(
        'spec.enableDefaultDeny.ingress: Invalid value: "no": must be a boolean'
    )


def test_clusterwide_has_no_namespace_and_accepts_specs():
    obj = cnp(kind="CiliumClusterwideNetworkPolicy", specs=[rule(ingress=[{}])])
    obj["metadata"]["namespace"] = "kube-system"
    out = valid(obj)
    assert "namespace" not in out["metadata"]
