"""Policy objects -> the internal rule model: CNP/CCNP fields, namespace scoping, NetworkPolicy (§2, §3.6)."""

from __future__ import annotations

import ipaddress

import pytest

from membrane.model.labels import Requirement
from membrane.model.validate import validate_object
from membrane.policy.rules import Origin, PortSpec, prefixes_used, rules_from_cilium_policy
from membrane.policy.selector import CIDRSelector, EndpointSelector, IdentityLabels
from membrane.policy.translate import origin_of, replace_policies, rules_from_object

NS = "k8s:io.kubernetes.pod.namespace"


def load(obj: dict) -> list:
    return rules_from_object(validate_object(obj, "test"))


def cnp(spec=None, *, name="p", ns="x", kind="CiliumNetworkPolicy", **top) -> list:
    meta = {"name": name} if kind == "CiliumClusterwideNetworkPolicy" else {"name": name, "namespace": ns}
    obj = {"apiVersion": "cilium.io/v2", "kind": kind, "metadata": meta, **top}
    if spec is not None:
        obj["spec"] = {"endpointSelector": {"matchLabels": {"app": "web"}}, **spec}
    return load(obj)


def knp(spec: dict, *, ns="x") -> list:
    return load({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "np", "namespace": ns}, "spec": spec})


def sel(*reqs: tuple) -> EndpointSelector:
    return EndpointSelector.of(Requirement(*r) for r in reqs)


def matches(selector, labels: dict) -> bool:
    return selector.matches(IdentityLabels.of(labels))


def test_cnp_subject_and_peers_are_scoped_to_the_policy_namespace():
    (rule,) = cnp({"ingress": [{"fromEndpoints": [{}, {"matchLabels": {"k8s:io.kubernetes.pod.namespace": "y"}},
                                                   {"matchLabels": {"io.cilium.k8s.namespace.labels.team": "a"}},
                                                   {"matchLabels": {"reserved:host": ""}}]}]})
    assert rule.origin == Origin("CiliumNetworkPolicy", "x", "p")
    assert rule.subject == sel(("any:app", "In", ("web",)), (NS, "In", ("x",)))
    assert rule.endpoints == (
        sel((NS, "In", ("x",))),
        sel((NS, "In", ("y",))),
        sel(("any:io.cilium.k8s.namespace.labels.team", "In", ("a",))),
        sel(("reserved:host", "In", ("",))),
    )
    assert rule.direction == "ingress" and not rule.deny and rule.default_deny
    assert rule.l4_all and not rule.l3_wildcard


def test_cnp_subject_namespace_cannot_be_overridden():
    (rule,) = cnp({"endpointSelector": {"matchLabels": {"k8s:io.kubernetes.pod.namespace": "other"}}, "ingress": [{}]})
    assert rule.subject == sel((NS, "In", ("x",)))


def test_ccnp_is_not_namespace_scoped_but_peers_need_a_namespace():
    (rule,) = cnp({"endpointSelector": {}, "egress": [{"toEndpoints": [{}]}]}, kind="CiliumClusterwideNetworkPolicy")
    assert rule.origin == Origin("CiliumClusterwideNetworkPolicy", "", "p")
    assert rule.subject == EndpointSelector()
    assert rule.endpoints == (sel((NS, "Exists", ())),)
    assert matches(rule.endpoints[0], {NS: "z", "k8s:app": "a"})
    assert not matches(rule.endpoints[0], {"reserved:world": ""})


def test_ccnp_node_selector_targets_host_endpoints():
    (rule,) = load({"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy", "metadata": {"name": "h"},
                    "spec": {"nodeSelector": {"matchLabels": {"role": "worker"}},
                             "ingress": [{"fromEntities": ["cluster"]}]}})
    assert rule.node_selector == sel(("any:role", "In", ("worker",)))
    assert matches(rule.subject, {"reserved:host": ""}) and not matches(rule.subject, {NS: "x"})
    assert rule.entities == ("cluster",)


def test_selector_sources():
    any_app = sel(("any:app", "In", ("web",)))
    k8s_app = sel(("k8s:app", "In", ("web",)))
    assert matches(any_app, {"k8s:app": "web"}) and matches(any_app, {"container:app": "web"})
    assert matches(k8s_app, {"k8s:app": "web"}) and not matches(k8s_app, {"container:app": "web"})
    (rule,) = cnp({"ingress": [{"fromEndpoints": [{"matchLabels": {"$host": ""}},
                                                   {"matchExpressions": [{"key": "any:tier", "operator": "NotIn",
                                                                          "values": ["db"]}]}]}]})
    assert rule.endpoints[0] == sel(("reserved:host", "In", ("",)))
    assert matches(rule.endpoints[1], {NS: "x", "k8s:app": "b"})
    assert not matches(rule.endpoints[1], {NS: "x", "k8s:tier": "db"})


def test_spec_and_specs_are_all_imported_with_default_deny_per_direction():
    obj = {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "p", "namespace": "x"},
           "spec": {"endpointSelector": {}, "egressDeny": [{"toEntities": ["world"]}]},
           "specs": [{"endpointSelector": {}, "ingress": [{}], "enableDefaultDeny": {"ingress": False}},
                     {"endpointSelector": {}, "egress": [{"toEntities": ["host"]}], "enableDefaultDeny": {"ingress": True}}]}
    rules = load(obj)
    assert [(r.direction, r.deny, r.default_deny) for r in rules] == [
        ("egress", True, True), ("ingress", False, False), ("egress", False, True)]


def test_ports_icmps_l7_and_l3_wildcard():
    (ports_rule, icmp_rule) = cnp({"ingress": [
        {"toPorts": [{"ports": [{"port": "80", "endPort": 90, "protocol": "TCP"}, {"port": "http"}, {"port": 53,
                                                                                                  "protocol": "TCP"}],
                      "rules": {"http": [{}]}}]},
        {"fromEntities": ["world"], "icmps": [{"fields": [{"type": 8}, {"family": "IPv6", "type": "EchoRequest"}]}]},
    ]})
    assert ports_rule.l3_wildcard and ports_rule.has_l7 and not ports_rule.l4_all
    assert ports_rule.ports == (PortSpec(80, 90, "TCP"), PortSpec(0, 0, "ANY", "http"), PortSpec(53, 0, "TCP"))
    assert not icmp_rule.l3_wildcard and icmp_rule.entities == ("world",)
    assert [(i.family, i.type) for i in icmp_rule.icmps] == [("IPv4", 8), ("IPv6", 128)]


def test_cidr_peers_and_except():
    (a, b) = cnp({"egress": [{"toCIDR": ["10.0.0.0/8", "1.2.3.4"]},
                             {"toCIDRSet": [{"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}]}]})
    assert a.cidrs == (CIDRSelector.parse("10.0.0.0/8"), CIDRSelector.parse("1.2.3.4/32"))
    world = b.cidrs[0]
    assert matches(world, {"reserved:world": ""})
    assert matches(world, {"cidr:192.168.0.0/16": "", "reserved:world": ""})
    assert not matches(world, {"cidr:10.1.0.0/16": ""})
    assert not matches(world, {NS: "x"})
    # the most specific cidr label decides (identities may carry their supernets too)
    assert not matches(world, {"cidr:10.1.2.3/32": "", "cidr:0.0.0.0/0": ""})
    assert matches(a.cidrs[0], {"cidr:10.1.2.3/32": ""}) and not matches(a.cidrs[0], {"cidr:11.0.0.0/8": ""})
    assert matches(CIDRSelector.parse("2001:db8::/32"), {"cidr:2001-db8--/48": ""})
    assert prefixes_used([a, b]) == {
        ipaddress.ip_network(n) for n in ("10.0.0.0/8", "1.2.3.4/32", "0.0.0.0/0")}


def test_tofqdns_selects_the_identities_labelled_with_the_selector_in_any_namespace():
    (rule,) = cnp({"egress": [{"toFQDNs": [{"matchName": "Example.com."}, {"matchPattern": "*.example.com"}],
                               "toPorts": [{"ports": [{"port": "443"}]}]}]})
    assert rule.unsupported == ()
    assert rule.fqdns == ("example.com", "*.example.com")
    assert not rule.l3_wildcard and len(rule.peer_selectors) == 2
    by_name, by_pattern = rule.peer_selectors
    assert matches(by_name, {"fqdn:example.com": "", "cidr:192.0.2.1/32": "", "reserved:world": ""})
    assert not matches(by_name, {"fqdn:*.example.com": "", "reserved:world": ""})
    assert matches(by_pattern, {"fqdn:*.example.com": ""})
    assert not matches(by_name, {"cidr:192.0.2.1/32": "", "reserved:world": ""})


def test_not_a_policy():
    with pytest.raises(ValueError, match="not a Cilium network policy"):
        rules_from_cilium_policy({"kind": "Pod"})


# --- NetworkPolicy (§3.6) ---------------------------------------------------------------------------

def test_knp_default_policy_types_and_deny_all():
    (rule,) = knp({"podSelector": {}})
    assert rule.origin == Origin("NetworkPolicy", "x", "np")
    assert rule.direction == "ingress" and rule.default_deny and rule.peer_selectors == () and not rule.l3_wildcard
    assert rule.subject == sel((NS, "In", ("x",)))
    rules = knp({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"]})
    assert [(r.direction, r.l3_wildcard) for r in rules] == [("egress", False)]
    assert rules[0].subject == sel(("k8s:app", "In", ("web",)), (NS, "In", ("x",)))


def test_knp_empty_from_means_every_peer_and_missing_ports_all_ports():
    (rule,) = knp({"podSelector": {}, "ingress": [{}]})
    assert rule.l3_wildcard and rule.l4_all
    rules = knp({"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [{"from": []}]})
    assert [(r.direction, r.l3_wildcard) for r in rules] == [("ingress", True), ("egress", False)]


def test_knp_peers():
    (rule,) = knp({"podSelector": {}, "ingress": [{"from": [
        {"podSelector": {"matchLabels": {"pod": "a"}}},
        {"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}},
        {"namespaceSelector": {}},
        {"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "In", "values": ["y", "z"]}]}},
        {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}},
    ]}]})
    assert rule.endpoints == (
        sel(("k8s:pod", "In", ("a",)), (NS, "In", ("x",))),
        sel(("k8s:pod", "In", ("b",)), ("k8s:io.cilium.k8s.namespace.labels.ns", "In", ("y",))),
        sel((NS, "Exists", ())),
        sel(("k8s:io.cilium.k8s.namespace.labels.ns", "In", ("y", "z"))),
    )
    assert rule.cidrs == (CIDRSelector.parse("192.168.0.0/16", ["192.168.1.0/24"]),)


def test_knp_ports():
    (rule,) = knp({"podSelector": {}, "ingress": [{"ports": [
        {"port": 80}, {"protocol": "UDP"}, {"port": 8000, "endPort": 8080, "protocol": "SCTP"}, {"port": "http"}]}]})
    assert rule.l3_wildcard
    assert rule.ports == (PortSpec(80, 0, "TCP"), PortSpec(0, 0, "UDP"), PortSpec(8000, 8080, "SCTP"),
                          PortSpec(0, 0, "TCP", "http"))


def test_replace_policies_swaps_rules_by_origin():
    base = {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "p", "namespace": "x"},
            "spec": {"endpointSelector": {}, "ingress": [{}]}}
    other = {**base, "metadata": {"name": "q", "namespace": "x"}}
    current = load(base) + load(other)
    new = validate_object({**base, "spec": {"endpointSelector": {}, "egress": [{}]}}, "t")
    merged = replace_policies(current, [new, {"kind": "Pod"}])
    assert sorted((r.origin.name, r.direction) for r in merged) == [("p", "egress"), ("q", "ingress")]
    assert origin_of(new) == Origin("CiliumNetworkPolicy", "x", "p")
