"""`membrane policy simulate`: which pod pairs change reachability between two policy sets."""

from __future__ import annotations

import pytest

from membrane.model.validate import validate_object
from membrane.policy.simulate import (
    Outcome,
    PodInfo,
    Probe,
    connection_outcome,
    default_probes,
    resolve_pods,
    simulate,
)
from membrane.policy.translate import replace_policies, rules_from_object

NS = "k8s:io.kubernetes.pod.namespace"


def pod(ns: str, name: str, identity: int, **ports: tuple[int, str]) -> PodInfo:
    return PodInfo(ns, name, identity, {NS: ns, "k8s:pod": name, "k8s:io.cilium.k8s.namespace.labels.ns": ns},
                   f"10.0.{identity % 256}.1", ports)


PODS = [pod("x", "a", 1000), pod("x", "b", 1001), pod("y", "a", 1002, http=(8080, "TCP"))]


def cnp(name: str, spec: dict, ns: str = "x") -> dict:
    return validate_object({"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
                            "metadata": {"name": name, "namespace": ns}, "spec": spec}, "test")


DENY_ALL_INGRESS_X_A = cnp("deny", {"endpointSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{}]})


def test_probe_parsing():
    assert Probe.parse("80") == Probe("TCP", 80)
    assert Probe.parse("53/udp") == Probe("UDP", 53)
    assert Probe.parse("icmp") == Probe("ICMP", 8)
    assert str(Probe("UDP", 53)) == "53/UDP" and str(Probe("ICMP", 8)) == "icmp"
    for bad in ("0", "http", "80/gre", "70000/tcp"):
        with pytest.raises(ValueError, match="invalid probe"):
            Probe.parse(bad)


def test_default_deny_ingress_changes_every_pair_into_that_pod():
    changes = simulate(PODS, [], rules_from_object(DENY_ALL_INGRESS_X_A))
    assert [(c.src, c.dst, str(c.probe)) for c in changes] == [("x/b", "x/a", "80/TCP"), ("y/a", "x/a", "80/TCP")]
    assert changes[0].before == Outcome("allow")
    assert changes[0].after == Outcome("default-deny", 133, "ingress")
    assert str(changes[0].after) == "default-deny (ingress, 133)"


def test_applying_an_allow_on_top_restores_some_pairs_only():
    current = rules_from_object(DENY_ALL_INGRESS_X_A)
    allow_b = cnp("allow-b", {"endpointSelector": {"matchLabels": {"pod": "a"}},
                              "ingress": [{"fromEndpoints": [{"matchLabels": {"pod": "b"}}],
                                           "toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}]}]}]})
    candidate = replace_policies(current, [allow_b])
    changes = simulate(PODS, current, candidate, probes=[Probe("TCP", 80), Probe("TCP", 81)])
    assert [(c.src, c.dst, str(c.probe), c.after.verdict) for c in changes] == [("x/b", "x/a", "80/TCP", "allow")]
    # filters
    assert simulate(PODS, current, candidate, sources=["y/a"]) == []
    assert len(simulate(PODS, current, candidate, destinations=["x/a"])) == 1


def test_egress_deny_is_reported_on_the_egress_side_with_181():
    deny = cnp("deny-egress", {"endpointSelector": {"matchLabels": {"pod": "b"}},
                               "egressDeny": [{"toEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "y"}}],
                                               "toPorts": [{"ports": [{"port": "http", "protocol": "TCP"}]}]}]})
    rules = rules_from_object(deny)
    assert default_probes(PODS, rules) == [Probe("TCP", 8080)]
    changes = simulate(PODS, [], rules)
    # the deny-only rule also switches x/b's egress to default-deny (appendix A item 3)
    assert [(c.src, c.dst, str(c.probe), c.after) for c in changes] == [
        ("x/b", "x/a", "8080/TCP", Outcome("default-deny", 133, "egress")),
        ("x/b", "y/a", "8080/TCP", Outcome("deny", 181, "egress")),
    ]
    policies = resolve_pods(PODS, rules)
    assert connection_outcome(PODS[1], PODS[0], Probe("TCP", 80), policies) == Outcome("default-deny", 133, "egress")


def test_default_probes_cover_ranges_and_icmp():
    spec = {"endpointSelector": {}, "ingress": [
        {"toPorts": [{"ports": [{"port": "8000", "endPort": 8010, "protocol": "ANY"}]}]},
        {"fromEntities": ["all"], "icmps": [{"fields": [{"type": 8}]}]}]}
    probes = default_probes(PODS, rules_from_object(cnp("r", spec)))
    assert probes == sorted([Probe("ICMP", 8), Probe("TCP", 8000), Probe("TCP", 8010),
                             Probe("UDP", 8000), Probe("UDP", 8010)])
    assert default_probes(PODS) == [Probe("TCP", 80)]


def test_enforcement_mode_never_means_no_change():
    assert simulate(PODS, [], rules_from_object(DENY_ALL_INGRESS_X_A), mode="never") == []


def test_l7_rules_make_pairs_l7_filtered_at_the_port_level():
    l7 = cnp("l7", {"endpointSelector": {"matchLabels": {"pod": "a"}},
                    "ingress": [{"fromEndpoints": [{"matchLabels": {"pod": "b"}}],
                                 "toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}],
                                              "rules": {"http": [{"method": "GET"}]}}]}]})
    plain = cnp("l7", {"endpointSelector": {"matchLabels": {"pod": "a"}},
                       "ingress": [{"fromEndpoints": [{"matchLabels": {"pod": "b"}}],
                                    "toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}]}]}]})
    changes = simulate(PODS, rules_from_object(plain), rules_from_object(l7), probes=[Probe("TCP", 80)])
    assert [(c.src, c.dst, str(c.before), str(c.after)) for c in changes] == [
        ("x/b", "x/a", "allow", "allow (L7-filtered: http ingress)")]
