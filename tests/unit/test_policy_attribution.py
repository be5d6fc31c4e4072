"""Which policies decided a verdict (Hubble's *_allowed_by / *_denied_by, --print-policy-names)."""

from __future__ import annotations

import pytest

from membrane.model.validate import validate_object
from membrane.policy.attribution import attribute, policy_labels
from membrane.policy.mapstate import PROTO_TCP, PROTO_UDP
from membrane.policy.resolve import resolve_endpoint, selecting_rules, verdict
from membrane.policy.rules import Origin, Rule
from membrane.policy.translate import rules_from_object
from tests.unit.test_policy_resolve import CLIENT, ENTITIES, OTHER, SERVER, WORLD, make_cache


def policy(name: str, kind: str = "CiliumNetworkPolicy", **spec) -> list[Rule]:
    spec.setdefault("endpointSelector", {"matchLabels": {"app": "server"}})
    meta = {"name": name} if kind == "CiliumClusterwideNetworkPolicy" else {"name": name, "namespace": "x"}
    obj = {"apiVersion": "cilium.io/v2", "kind": kind, "metadata": meta, "spec": spec}
    return rules_from_object(validate_object(obj, "test"))


ALLOW_CLIENT_80 = policy("allow-client", ingress=[{
    "fromEndpoints": [{"matchLabels": {"app": "client"}}], "toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}]}]}])
ALLOW_ANY_80 = policy("any-80", ingress=[{"toPorts": [{"ports": [{"port": "80"}]}]}])
DENY_OTHER = policy("deny-other", ingressDeny=[{"fromEndpoints": [{"matchLabels": {"app": "other"}}]}],
                    log={"value": "other-denied"})
EGRESS_WORLD = policy("to-world", kind="CiliumClusterwideNetworkPolicy",
                      egress=[{"toEntities": ["world"], "toPorts": [{"ports": [{"port": "443"}]}]}])


def names(rules: list[Rule], *, direction: str = "ingress", peer: int = CLIENT, protocol: int = PROTO_TCP,
          port: int = 80, deny: bool = False) -> list[str]:
    cache = make_cache()
    for r in rules:
        cache.add_selectors(r.selectors)
    got = attribute(selecting_rules(SERVER, rules, cache), cache, direction=direction, peer=peer, protocol=protocol,
                    port=port, deny=deny, entities=ENTITIES)
    return [str(o) for o in got.origins]


def test_allow_names_every_policy_that_allows_the_packet() -> None:
    rules = ALLOW_CLIENT_80 + ALLOW_ANY_80 + DENY_OTHER
    assert names(rules) == ["CiliumNetworkPolicy/x/allow-client", "CiliumNetworkPolicy/x/any-80"]
    # another peer on port 80: only the L3-wildcard policy covers it
    assert names(rules, peer=WORLD) == ["CiliumNetworkPolicy/x/any-80"]


def test_port_and_protocol_must_be_covered() -> None:
    assert names(ALLOW_CLIENT_80, port=81) == []
    assert names(ALLOW_CLIENT_80, protocol=PROTO_UDP) == []
    assert names(ALLOW_ANY_80, protocol=PROTO_UDP) == ["CiliumNetworkPolicy/x/any-80"]  # no protocol: any


def test_denies_are_named_by_deny_rules_and_default_deny_by_none() -> None:
    rules = ALLOW_CLIENT_80 + DENY_OTHER
    assert names(rules, peer=OTHER, deny=True) == ["CiliumNetworkPolicy/x/deny-other"]
    assert names(rules, peer=WORLD, port=22, deny=True) == []  # nothing allows it: default deny, no name
    assert names(rules, peer=OTHER, deny=False) == []


def test_direction_and_entities() -> None:
    assert names(EGRESS_WORLD, direction="egress", peer=WORLD, port=443) == [
        "CiliumClusterwideNetworkPolicy/to-world"]
    assert names(EGRESS_WORLD, direction="ingress", peer=WORLD, port=443) == []
    assert names(EGRESS_WORLD, direction="egress", peer=CLIENT, port=443) == []
    with pytest.raises(ValueError, match="direction"):
        names(EGRESS_WORLD, direction="both")


def test_log_values_are_reported() -> None:
    cache = make_cache()
    rules = DENY_OTHER
    for r in rules:
        cache.add_selectors(r.selectors)
    got = attribute(selecting_rules(SERVER, rules, cache), cache, direction="ingress", peer=OTHER,
                    protocol=PROTO_TCP, port=80, deny=True, entities=ENTITIES)
    assert got.logs == ("other-denied",)


def test_agrees_with_the_verdict_of_the_resolved_policy() -> None:
    """Every allowed packet of a resolved policy is attributed to at least one policy, every packet
    denied by a deny rule too; a packet nothing allows is attributed to none."""
    rules = ALLOW_CLIENT_80 + ALLOW_ANY_80 + DENY_OTHER + policy("udp-53", ingress=[{
        "fromEntities": ["world"], "toPorts": [{"ports": [{"port": "53", "protocol": "UDP"}]}]}])
    cache = make_cache()
    for r in rules:
        cache.add_selectors(r.selectors)
    resolved = resolve_endpoint(SERVER, rules, cache, entities=ENTITIES)
    selecting = selecting_rules(SERVER, rules, cache)
    for peer in (CLIENT, OTHER, WORLD):
        for protocol in (PROTO_TCP, PROTO_UDP):
            for port in (22, 53, 80, 443):
                allowed = verdict(resolved, peer, protocol, port, "ingress")[0] == "allow"
                got = attribute(selecting, cache, direction="ingress", peer=peer, protocol=protocol, port=port,
                                deny=not allowed, entities=ENTITIES)
                if allowed:
                    assert got.origins, (peer, protocol, port)
                elif peer == OTHER:
                    assert [str(o) for o in got.origins] == ["CiliumNetworkPolicy/x/deny-other"]
                else:
                    assert got.origins == (), (peer, protocol, port)


def test_policy_labels_are_ciliums() -> None:
    assert policy_labels(Origin("CiliumNetworkPolicy", "x", "p"), uid="u1") == [
        "k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy", "k8s:io.cilium.k8s.policy.name=p",
        "k8s:io.cilium.k8s.policy.namespace=x", "k8s:io.cilium.k8s.policy.uid=u1"]
    assert policy_labels(Origin("CiliumClusterwideNetworkPolicy", "", "c")) == [
        "k8s:io.cilium.k8s.policy.derived-from=CiliumClusterwideNetworkPolicy", "k8s:io.cilium.k8s.policy.name=c"]
