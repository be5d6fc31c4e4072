"""Per-endpoint resolution and the datapath verdict: reference §3.1-3.5."""

from __future__ import annotations

import random

import pytest

from membrane.model.validate import validate_object
from membrane.policy.mapstate import (
    PROTO_ANY,
    PROTO_ICMP,
    PROTO_SCTP,
    PROTO_TCP,
    PROTO_UDP,
    PolicyEntry,
    ResolvedPolicy,
    normalize,
    port_range_prefixes,
)
from membrane.policy.resolve import resolve_endpoint, selecting_rules, verdict
from membrane.policy.rules import Rule
from membrane.policy.selectorcache import SelectorCache
from membrane.policy.translate import rules_from_object

SERVER, CLIENT, OTHER, OTHER_NS, HOST, WORLD = 1000, 1001, 1002, 1003, 1, 2
ENTITIES = {"host": {HOST}, "world": {WORLD}, "cluster": {HOST, SERVER, CLIENT, OTHER, OTHER_NS}}


def pod_labels(ns: str, **labels: str) -> dict[str, str]:
    out = {f"k8s:{k}": v for k, v in labels.items()}
    out["k8s:io.kubernetes.pod.namespace"] = ns
    out["k8s:io.cilium.k8s.namespace.labels.ns"] = ns
    return out


def make_cache() -> SelectorCache:
    cache = SelectorCache()
    cache.upsert_identity(SERVER, pod_labels("x", app="server"))
    cache.upsert_identity(CLIENT, pod_labels("x", app="client"))
    cache.upsert_identity(OTHER, pod_labels("x", app="other"))
    cache.upsert_identity(OTHER_NS, pod_labels("y", app="client"))
    cache.upsert_identity(HOST, {"reserved:host": ""})
    cache.upsert_identity(WORLD, {"reserved:world": ""})
    return cache


def cnp(name: str = "p", ns: str = "x", **spec) -> list[Rule]:
    spec.setdefault("endpointSelector", {"matchLabels": {"app": "server"}})
    obj = {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
           "metadata": {"name": name, "namespace": ns}, "spec": spec}
    return rules_from_object(validate_object(obj, "test"))


def resolve(rules: list[Rule], identity: int = SERVER, **kw) -> ResolvedPolicy:
    cache = make_cache()
    for rule in rules:
        cache.add_selectors(rule.selectors)
    return resolve_endpoint(identity, rules, cache, entities=ENTITIES, **kw)


def ports(*numbers: str, protocol: str = "TCP", **extra) -> list[dict]:
    return [{"ports": [{"port": n, "protocol": protocol} for n in numbers], **extra}]


FROM_CLIENT = [{"matchLabels": {"app": "client"}}]
HTTP = {"http": [{"method": "GET"}]}
ALLOW_L3 = cnp("l3", ingress=[{"fromEndpoints": FROM_CLIENT}])
ALLOW_L4 = cnp("l4", ingress=[{"toPorts": ports("80", "81")}])
ALLOW_L7 = cnp("l7", ingress=[{"fromEndpoints": FROM_CLIENT, "toPorts": ports("80", rules=HTTP)}])
DENY_L4_80 = cnp("deny-l4", ingressDeny=[{"toPorts": ports("80")}])
DENY_L3_CLIENT = cnp("deny-l3", ingressDeny=[{"fromEndpoints": FROM_CLIENT}])
ALLOWS = ALLOW_L3 + ALLOW_L4 + ALLOW_L7


@pytest.mark.parametrize(("rules", "curl80", "curl81", "ping"), [
    (ALLOWS, ("allow", 0), ("allow", 0), ("allow", 0)),
    (ALLOWS + DENY_L4_80, ("deny", 181), ("allow", 0), ("allow", 0)),
    (ALLOWS + DENY_L3_CLIENT, ("deny", 181), ("deny", 181), ("deny", 181)),
    (ALLOWS + DENY_L3_CLIENT + DENY_L4_80, ("deny", 181), ("deny", 181), ("deny", 181)),
    (DENY_L4_80, ("deny", 181), ("default-deny", 133), ("default-deny", 133)),
], ids=["allows", "l4-deny-80", "l3-deny", "l3-and-l4-deny", "deny-only"])
def test_outcome_table_3_5(rules, curl80, curl81, ping):
    res = resolve(rules)
    assert res.ingress_enforced and not res.egress_enforced
    assert verdict(res, CLIENT, PROTO_TCP, 80) == curl80
    assert verdict(res, CLIENT, PROTO_TCP, 81) == curl81
    assert verdict(res, CLIENT, PROTO_ICMP, 8) == ping


def test_allow_all_until_selected_then_allow_list():
    assert verdict(resolve([]), CLIENT, PROTO_TCP, 80) == ("allow", 0)
    res = resolve(ALLOW_L3)
    assert verdict(res, CLIENT, PROTO_UDP, 53) == ("allow", 0)  # no toPorts: every port and protocol
    assert verdict(res, OTHER, PROTO_TCP, 80) == ("default-deny", 133)
    assert verdict(res, OTHER_NS, PROTO_TCP, 80) == ("default-deny", 133)  # namespace scoping
    assert verdict(res, CLIENT, PROTO_TCP, 80, "egress") == ("allow", 0)  # egress untouched
    # rules that select another endpoint change nothing for this one
    assert resolve(ALLOW_L3, identity=CLIENT) == ResolvedPolicy(False, False)


def test_l4_rule_without_peers_allows_any_peer_on_those_ports_only():
    res = resolve(ALLOW_L4)
    for peer in (CLIENT, OTHER_NS, WORLD, HOST):
        assert verdict(res, peer, PROTO_TCP, 81) == ("allow", 0)
        assert verdict(res, peer, PROTO_TCP, 82) == ("default-deny", 133)
        assert verdict(res, peer, PROTO_UDP, 80) == ("default-deny", 133)
        assert verdict(res, peer, PROTO_ICMP, 8) == ("default-deny", 133)  # L4 allow does not admit ICMP


def test_empty_ingress_item_is_default_deny_allowing_nothing():
    res = resolve(cnp(ingress=[{}]))
    assert res.ingress_enforced and res.entries == frozenset()
    assert verdict(res, CLIENT, PROTO_TCP, 80) == ("default-deny", 133)


def test_empty_from_endpoints_list_selects_nothing():
    res = resolve(cnp(ingress=[{"fromEndpoints": [], "toPorts": ports("80")}]))
    assert verdict(res, CLIENT, PROTO_TCP, 80) == ("default-deny", 133)


def test_enable_default_deny_false_keeps_default_allow_but_deny_still_applies():
    rules = cnp(ingressDeny=[{"fromEndpoints": FROM_CLIENT}], enableDefaultDeny={"ingress": False})
    res = resolve(rules)
    assert not res.ingress_enforced
    assert verdict(res, CLIENT, PROTO_TCP, 80) == ("deny", 181)
    assert verdict(res, OTHER, PROTO_TCP, 80) == ("allow", 0)
    # another selecting rule that wants default-deny still switches it on
    assert resolve(rules + ALLOW_L4).ingress_enforced


def test_enforcement_modes():
    always = resolve([], mode="always")
    assert always.ingress_enforced and always.egress_enforced
    assert verdict(always, CLIENT, PROTO_TCP, 80, "egress") == ("default-deny", 133)
    never = resolve(ALLOW_L3 + DENY_L3_CLIENT, mode="never")
    assert never == ResolvedPolicy(False, False)
    assert verdict(never, CLIENT, PROTO_TCP, 80) == ("allow", 0)
    with pytest.raises(ValueError, match="unknown policy enforcement mode"):
        resolve([], mode="sometimes")


def test_egress_rules_and_entities():
    res = resolve(cnp(egress=[{"toEntities": ["world"]}, {"toEntities": ["host"], "toPorts": ports("53", protocol="UDP")}]))
    assert res.egress_enforced and not res.ingress_enforced
    assert verdict(res, WORLD, PROTO_TCP, 443, "egress") == ("allow", 0)
    assert verdict(res, HOST, PROTO_UDP, 53, "egress") == ("allow", 0)
    assert verdict(res, HOST, PROTO_TCP, 53, "egress") == ("default-deny", 133)
    assert verdict(res, CLIENT, PROTO_TCP, 80, "egress") == ("default-deny", 133)


def test_entity_all_is_the_any_identity_and_none_selects_nothing():
    res = resolve(cnp(ingress=[{"fromEntities": ["all"], "toPorts": ports("80")}, {"fromEntities": ["none"]}]))
    assert {e.identity for e in res.entries} == {0}
    assert verdict(res, 123456, PROTO_TCP, 80) == ("allow", 0)
    assert verdict(res, CLIENT, PROTO_TCP, 81) == ("default-deny", 133)


def test_protocol_any_expands_to_tcp_udp_sctp_and_port_zero_any_is_everything():
    res = resolve(cnp(ingress=[{"fromEndpoints": FROM_CLIENT, "toPorts": ports("80", protocol="ANY")}]))
    assert {e.protocol for e in res.entries} == {PROTO_TCP, PROTO_UDP, PROTO_SCTP}
    assert verdict(res, CLIENT, PROTO_ICMP, 8) == ("default-deny", 133)
    res = resolve(cnp(ingress=[{"fromEndpoints": FROM_CLIENT, "toPorts": ports("0", protocol="ANY")}]))
    assert res.entries == frozenset({PolicyEntry(CLIENT, "ingress", PROTO_ANY, 0, 0, False)})
    res = resolve(cnp(ingress=[{"fromEndpoints": FROM_CLIENT, "toPorts": ports("0", protocol="UDP")}]))
    assert verdict(res, CLIENT, PROTO_UDP, 5353) == ("allow", 0)
    assert verdict(res, CLIENT, PROTO_TCP, 5353) == ("default-deny", 133)


def test_port_range_becomes_prefixes():
    assert port_range_prefixes(80, 80) == [(80, 16)]
    assert port_range_prefixes(80, 83) == [(80, 14)]
    assert port_range_prefixes(0, 0) == [(0, 0)]
    assert port_range_prefixes(1, 65535)[0] == (1, 16)
    for start, end in ((8080, 8090), (1, 65535), (1000, 1999), (65535, 65535)):
        covered = []
        for port, plen in port_range_prefixes(start, end):
            covered.extend(range(port, port + (1 << (16 - plen))))
        assert covered == list(range(start, end + 1))
    res = resolve(cnp(ingress=[{"toPorts": [{"ports": [{"port": "8080", "endPort": 8090, "protocol": "TCP"}]}]}]))
    allowed = [p for p in range(8070, 8100) if verdict(res, CLIENT, PROTO_TCP, p)[0] == "allow"]
    assert allowed == list(range(8080, 8091))


def test_named_ports_resolve_against_destination():
    named = {"http": (8080, "TCP"), "dns": (53, "UDP")}
    rules = cnp(ingress=[{"toPorts": ports("http", protocol="ANY")}, {"toPorts": ports("dns", protocol="TCP")}])
    res = resolve(rules, named_ports=named)
    assert verdict(res, CLIENT, PROTO_TCP, 8080) == ("allow", 0)
    assert verdict(res, CLIENT, PROTO_UDP, 53) == ("default-deny", 133)  # protocol mismatch: no entry
    assert verdict(resolve(rules), CLIENT, PROTO_TCP, 8080) == ("default-deny", 133)  # unknown name
    egress = cnp(egress=[{"toEndpoints": FROM_CLIENT, "toPorts": ports("http")}])
    res = resolve(egress, peer_named_ports={CLIENT: {"http": frozenset({(9000, "TCP")})},
                                            OTHER: {"http": frozenset({(9001, "TCP")})}})
    assert verdict(res, CLIENT, PROTO_TCP, 9000, "egress") == ("allow", 0)
    assert verdict(res, CLIENT, PROTO_TCP, 9001, "egress") == ("default-deny", 133)


def test_icmp_rules():
    rules = cnp(ingress=[{"fromEndpoints": FROM_CLIENT, "icmps": [{"fields": [{"type": "EchoRequest"}]}]}])
    res = resolve(rules)
    assert verdict(res, CLIENT, PROTO_ICMP, 8) == ("allow", 0)
    assert verdict(res, CLIENT, PROTO_ICMP, 13) == ("default-deny", 133)
    assert verdict(res, CLIENT, PROTO_TCP, 80) == ("default-deny", 133)


def test_cidr_rules_select_cidr_identities_not_pods():
    cache = make_cache()
    cidr_id, inner_id = 16777217, 16777218
    cache.upsert_identity(cidr_id, {"cidr:192.168.0.0/16": "", "reserved:world": ""})
    cache.upsert_identity(inner_id, {"cidr:192.168.1.0/24": "", "reserved:world": ""})
    rules = cnp(egress=[{"toCIDRSet": [{"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}]}])
    cache.add_selectors(r for rule in rules for r in rule.selectors)
    res = resolve_endpoint(SERVER, rules, cache)
    assert verdict(res, cidr_id, PROTO_TCP, 80, "egress") == ("allow", 0)
    assert verdict(res, inner_id, PROTO_TCP, 80, "egress") == ("default-deny", 133)
    assert verdict(res, CLIENT, PROTO_TCP, 80, "egress") == ("default-deny", 133)
    assert verdict(res, WORLD, PROTO_TCP, 80, "egress") == ("default-deny", 133)


def test_normalize_drops_allows_inside_same_identity_deny():
    deny_all = PolicyEntry(5, "ingress", PROTO_ANY, 0, 0, True)
    allow_80 = PolicyEntry(5, "ingress", PROTO_TCP, 80, 16, False)
    deny_80 = PolicyEntry(5, "ingress", PROTO_TCP, 80, 16, True)
    allow_tcp = PolicyEntry(5, "ingress", PROTO_TCP, 0, 0, False)
    other = PolicyEntry(6, "ingress", PROTO_TCP, 80, 16, False)
    assert normalize([deny_all, allow_80, other]) == {deny_all, other}
    assert normalize([deny_80, allow_tcp]) == {deny_80, allow_tcp}  # narrower deny wins by longest prefix
    res = ResolvedPolicy(True, False, normalize([deny_80, allow_tcp]))
    assert verdict(res, 5, PROTO_TCP, 80) == ("deny", 181)
    assert verdict(res, 5, PROTO_TCP, 81) == ("allow", 0)


def test_selecting_rules():
    cache = make_cache()
    rules = ALLOW_L3 + cnp("c", endpointSelector={"matchLabels": {"app": "client"}}, ingress=[{}])
    assert [r.origin.name for r in selecting_rules(SERVER, rules, cache)] == ["l3"]
    assert [r.origin.name for r in selecting_rules(CLIENT, rules, cache)] == ["c"]


# An independent reading of the semantics, checked against the map entries + longest-prefix verdict.
def _oracle(rules, cache, identity, peer, proto, port, direction):
    selecting = [r for r in rules if r.direction == direction and cache.selects(r.subject, identity)]
    enforced = any(r.default_deny for r in selecting)

    def covers(rule):
        if not (rule.l3_wildcard or "all" in rule.entities
                or any(cache.selects(s, peer) for s in rule.peer_selectors)
                or any(peer in ENTITIES.get(e, ()) for e in rule.entities)):
            return False
        if rule.l4_all:
            return True
        for spec in rule.ports or ():
            protos = {"TCP": {6}, "UDP": {17}, "SCTP": {132}, "ANY": {6, 17, 132}}[spec.protocol]
            if spec.protocol == "ANY" and spec.port == 0:
                return True
            if proto in protos and (spec.port == 0 or spec.port <= port <= max(spec.port, spec.end_port)):
                return True
        return any(proto == PROTO_ICMP and port == i.type for i in rule.icmps)

    if any(r.deny and covers(r) for r in selecting):
        return ("deny", 181)
    if not enforced or any(not r.deny and covers(r) for r in selecting):
        return ("allow", 0)
    return ("default-deny", 133)


def _random_item(rng: random.Random) -> dict:
    item: dict = {}
    peer = rng.choice(["none", "client", "ns-y", "all", "host"])
    if peer == "client":
        item["fromEndpoints"] = FROM_CLIENT
    elif peer == "ns-y":
        item["fromEndpoints"] = [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "y"}}]
    elif peer in ("all", "host"):
        item["fromEntities"] = [peer]
    if rng.random() < 0.6:
        entries = []
        for _ in range(rng.randint(1, 2)):
            start = rng.choice([0, 78, 80, 81, 84])
            entry = {"port": str(start), "protocol": rng.choice(["TCP", "UDP", "ANY"])}
            if start and rng.random() < 0.4:
                entry["endPort"] = start + rng.randint(0, 6)
            entries.append(entry)
        item["toPorts"] = [{"ports": entries}]
    return item


def test_map_verdict_matches_semantics_on_random_policies():
    rng = random.Random(20260511)
    cache = make_cache()
    for case in range(150):
        spec = {}
        for key in ("ingress", "ingressDeny"):
            if rng.random() < 0.7:
                spec[key] = [_random_item(rng) for _ in range(rng.randint(1, 3))]
        if not spec:
            spec["ingress"] = [{}]
        rules = cnp(f"r{case}", **spec)
        cache.add_selectors(s for r in rules for s in r.selectors)
        res = resolve_endpoint(SERVER, rules, cache, entities=ENTITIES)
        for peer in (CLIENT, OTHER, OTHER_NS, HOST, WORLD):
            for proto in (PROTO_TCP, PROTO_UDP, PROTO_ICMP):
                for port in (0, 8, 78, 79, 80, 81, 82, 84, 86, 90, 443):
                    expected = _oracle(rules, cache, SERVER, peer, proto, port, "ingress")
                    assert verdict(res, peer, proto, port) == expected, (spec, peer, proto, port)
