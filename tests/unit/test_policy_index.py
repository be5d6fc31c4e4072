"""The selector cache's reverse index and the repository's rule index against brute-force scans.

Random label sets, selectors and rules go through random sequences of identity add/relabel/remove,
selector add/remove and policy add/replace/delete; after every step each indexed answer must equal
the one a scan of everything gives (and the repository must report the same affected identities as
before it had an index).
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter

import pytest

from membrane.model.labels import Requirement
from membrane.model.validate import validate_object
from membrane.policy.repository import PolicyRepository
from membrane.policy.resolve import resolve_endpoint, selecting_rules
from membrane.policy.rules import EGRESS, INGRESS, Origin, PortSpec, Rule
from membrane.policy.selector import CIDRSelector, EndpointSelector, IdentityLabels, Selector
from membrane.policy.selectorcache import SelectorCache
from membrane.policy.translate import origin_of, rules_from_object

KEYS = ("app", "tier", "io.kubernetes.pod.namespace", "team")
SOURCES = ("k8s", "k8s", "container", "unspec")
VALUES = ("a", "b", "c", "")
PREFIXES = ("10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "192.168.0.0/16", "0.0.0.0/0", "fd00::/8", "::/0")
ENTITY_NAMES = ("all", "none", "cluster", "host", "world")
ORIGINS = [Origin("CiliumNetworkPolicy", "x", f"p{i}") for i in range(6)]


def random_labels(rnd: random.Random) -> dict[str, str]:
    kind = rnd.random()
    if kind < 0.08:
        return {"reserved:" + rnd.choice(("host", "world", "world-ipv4", "remote-node")): ""}
    if kind < 0.2:
        labels = {f"cidr:{rnd.choice(PREFIXES[:4])}": "", "reserved:world": ""}
        if rnd.random() < 0.5:
            labels[f"cidr:{rnd.choice(PREFIXES[:4])}"] = ""
        return labels
    out = {}
    for key in rnd.sample(KEYS, rnd.randint(0, len(KEYS))):
        source = rnd.choice(SOURCES)
        out[key if source == "unspec" else f"{source}:{key}"] = rnd.choice(VALUES)
    return out


def random_selector(rnd: random.Random) -> Selector:
    if rnd.random() < 0.15:
        prefix = rnd.choice(PREFIXES)
        net = ipaddress.ip_network(prefix)
        excepts = [p for p in PREFIXES if ipaddress.ip_network(p).version == net.version and p != prefix]
        return CIDRSelector.parse(prefix, rnd.sample(excepts, rnd.randint(0, min(1, len(excepts)))))
    reqs = []
    for _ in range(rnd.choice((0, 1, 1, 2, 2, 3))):
        key = rnd.choice(("any:", "k8s:", "container:", "unspec:")) + rnd.choice(KEYS)
        if rnd.random() < 0.1:
            key = rnd.choice(("reserved:host", "reserved:world", "any:host"))
        op = rnd.choice(("In", "In", "In", "NotIn", "Exists", "DoesNotExist"))
        values = tuple(sorted(rnd.sample(VALUES, rnd.randint(0 if op == "In" else 1, 2)))) if op in (
            "In", "NotIn") else ()
        reqs.append(Requirement(key, op, values))
    return EndpointSelector.of(reqs)


def random_rule(rnd: random.Random, origin: Origin) -> Rule:
    subject = random_selector(rnd)
    while not isinstance(subject, EndpointSelector):
        subject = random_selector(rnd)
    peers = [random_selector(rnd) for _ in range(rnd.randint(0, 2))]
    entities = tuple(rnd.sample(ENTITY_NAMES, rnd.choice((0, 0, 0, 1))))
    return Rule(
        origin=origin, subject=subject, direction=rnd.choice((INGRESS, EGRESS)), deny=rnd.random() < 0.2,
        default_deny=rnd.random() < 0.8,
        endpoints=tuple(p for p in peers if isinstance(p, EndpointSelector)),
        cidrs=tuple(p for p in peers if isinstance(p, CIDRSelector)),
        entities=entities, l3_wildcard=not peers and not entities and rnd.random() < 0.5,
        ports=rnd.choice((None, (PortSpec(80, 0, "TCP"),), (PortSpec(1000, 1999, "UDP"),))),
    )


def prepared(cache: SelectorCache) -> dict[int, IdentityLabels]:
    return {i: IdentityLabels.of(labels) for i, labels in cache.identities().items()}


def brute_selections(cache: SelectorCache, sel: Selector, ids: dict[int, IdentityLabels] | None = None) -> set[int]:
    ids = prepared(cache) if ids is None else ids
    return {i for i, labels in ids.items() if sel.matches(labels)}


def check_cache(cache: SelectorCache, registered: Counter[Selector], probes: list[Selector]) -> None:
    live = {s for s, n in registered.items() if n > 0}
    ids = prepared(cache)
    assert len(cache) == len(live)
    for sel in live:
        assert cache.is_registered(sel)
        assert cache.selections(sel) == brute_selections(cache, sel, ids), sel
    for sel in probes:  # unregistered selectors are computed on the spot, through the buckets
        if sel not in live:
            assert cache.selections(sel) == brute_selections(cache, sel, ids), sel
    for ident, labels in ids.items():
        assert cache.selected_by(ident) == {s for s in live if s.matches(labels)}, ident
    assert cache.selected_by(99_999) == frozenset()


@pytest.mark.parametrize("seed", range(6))
def test_selector_cache_index_matches_a_scan(seed: int) -> None:
    rnd = random.Random(seed)
    cache = SelectorCache()
    registered: Counter[Selector] = Counter()
    pool = [random_selector(rnd) for _ in range(40)]
    for _ in range(300):
        ids = prepared(cache)
        before = {s: brute_selections(cache, s, ids) for s in registered if registered[s] > 0}
        op = rnd.random()
        if op < 0.45:
            ident = rnd.randint(1, 60)
            changed = cache.upsert_identity(ident, random_labels(rnd))
        elif op < 0.6:
            changed = cache.remove_identity(rnd.randint(1, 60))
        elif op < 0.85:
            sel = rnd.choice(pool)
            registered[sel] += 1
            assert cache.add_selector(sel) == brute_selections(cache, sel, ids)
            continue
        else:
            sel = rnd.choice(pool)
            cache.remove_selector(sel)
            registered[sel] = max(0, registered[sel] - 1)
            continue
        ids = prepared(cache)
        assert changed == {s for s in before if before[s] != brute_selections(cache, s, ids)}
        check_cache(cache, registered, pool[:10])
    check_cache(cache, registered, pool)


def entities_of(cache: SelectorCache) -> dict[str, set[int]]:
    ids = cache.identities()
    return {
        "host": {i for i, lab in ids.items() if "reserved:host" in lab},
        "world": {i for i, lab in ids.items() if "reserved:world" in lab},
        "cluster": {i for i, lab in ids.items() if not any(k.startswith("cidr:") for k in lab)},
    }


def reference_touched(repo: PolicyRepository, identity: int, changed: set[Selector]) -> set[int]:
    """What the repository answered for an identity change before it had an index."""
    rules = [r for r in repo.rules() if set(r.peer_selectors) & changed]
    rules += [r for r in repo.rules() if any(e not in ("all", "none") for e in r.entities)]
    return {identity} | {i for r in rules for i in repo.cache.selections(r.subject)}


def resolve_all(repo: PolicyRepository) -> dict[int, object]:
    entities = entities_of(repo.cache)
    return {i: repo.resolve(i, entities=entities) for i in repo.cache.identities()}


def check_repository(repo: PolicyRepository) -> None:
    cache, rules = repo.cache, repo.rules()
    assert repo.rule_count() == len(rules)
    entities = entities_of(cache)
    for ident in list(cache.identities()) + [99_999]:
        indexed = repo.selecting(ident)
        assert Counter(map(id, indexed)) == Counter(map(id, selecting_rules(ident, rules, cache)))
        for mode in ("default", "always"):
            assert repo.resolve(ident, entities=entities, mode=mode) == resolve_endpoint(
                ident, rules, cache, entities=entities, mode=mode)
    assert repo.prefixes() == {p for r in rules for c in r.cidrs for p in c.prefixes()}


def registered(repo: PolicyRepository) -> set[Selector]:
    return {s for r in repo.rules() for s in r.selectors}


def identity_change(repo: PolicyRepository, ident: int, labels: dict[str, str] | None) -> set[int]:
    """Upsert (or remove, ``labels`` None) an identity; checks the answer against the unindexed one."""
    ids = prepared(repo.cache)
    before = {s: brute_selections(repo.cache, s, ids) for s in registered(repo)}
    got = repo.upsert_identity(ident, labels) if labels is not None else repo.remove_identity(ident)
    ids = prepared(repo.cache)
    changed = {s for s, sel in before.items() if brute_selections(repo.cache, s, ids) != sel}
    assert got == reference_touched(repo, ident, changed)
    return got


@pytest.mark.parametrize("seed", range(6))
def test_repository_index_matches_a_scan(seed: int) -> None:
    rnd = random.Random(1000 + seed)
    repo = PolicyRepository()
    for ident in range(1, 25):
        repo.upsert_identity(ident, random_labels(rnd))
    for _ in range(100):
        before = resolve_all(repo)
        op = rnd.random()
        if op < 0.3:
            affected = identity_change(repo, rnd.randint(1, 40), random_labels(rnd))
        elif op < 0.4:
            affected = identity_change(repo, rnd.randint(1, 40), None)
        elif op < 0.85:
            origin = rnd.choice(ORIGINS)
            new = [random_rule(rnd, origin) for _ in range(rnd.randint(0, 3))]
            old = repo.policies().get(origin, ())
            expected = {i for r in (*old, *new) for i in brute_selections(repo.cache, r.subject)}
            affected = repo.set_policy(origin, new)
            assert affected == expected
        else:
            origin = rnd.choice(ORIGINS)
            old = repo.policies().get(origin, ())
            affected = repo.delete_policy(origin)
            assert affected == {i for r in old for i in brute_selections(repo.cache, r.subject)}
        check_repository(repo)
        after = resolve_all(repo)
        # whatever resolves differently now was reported as affected
        assert {i for i in after if i in before and before[i] != after[i]} <= affected
    for origin in ORIGINS:
        repo.delete_policy(origin)
    assert repo.rules() == [] and len(repo.cache) == 0 and repo.rule_count() == 0 and repo.prefixes() == set()


def test_replacing_a_policy_with_the_same_rule_objects_keeps_them_indexed() -> None:
    repo = PolicyRepository()
    repo.upsert_identity(1000, {"k8s:app": "web", "k8s:io.kubernetes.pod.namespace": "x"})
    repo.upsert_identity(1001, {"k8s:app": "client", "k8s:io.kubernetes.pod.namespace": "x"})
    obj = validate_object({"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
                           "metadata": {"name": "p", "namespace": "x"},
                           "spec": {"endpointSelector": {"matchLabels": {"app": "web"}},
                                    "ingress": [{"fromEndpoints": [{"matchLabels": {"app": "client"}}]}]}}, "test")
    rules = rules_from_object(obj)
    origin = origin_of(obj)
    repo.set_policy(origin, rules)
    assert repo.set_policy(origin, rules) == {1000}
    assert repo.set_policy(origin, [*rules, *rules]) == {1000}  # the same object twice
    assert repo.selecting(1000) == [rules[0], rules[0]]
    repo.set_policy(origin, rules)
    assert repo.selecting(1000) == rules and repo.selecting(1001) == []
    assert repo.resolve(1000) == resolve_endpoint(1000, repo.rules(), repo.cache)
    assert repo.upsert_identity(1002, {"k8s:app": "client", "k8s:io.kubernetes.pod.namespace": "x"}) == {1000, 1002}
    repo.delete_policy(origin)
    assert repo.selecting(1000) == [] and repo.rule_count() == 0 and len(repo.cache) == 0
