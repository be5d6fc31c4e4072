"""SelectorCache and PolicyRepository: incremental selections and what a change touches."""

from __future__ import annotations

from membrane.model.labels import Requirement
from membrane.model.validate import validate_object
from membrane.policy.repository import PolicyRepository
from membrane.policy.resolve import resolve_endpoint, verdict
from membrane.policy.selector import CIDRSelector, EndpointSelector
from membrane.policy.selectorcache import SelectorCache
from membrane.policy.translate import origin_of, rules_from_object

NS = "k8s:io.kubernetes.pod.namespace"
WEB = EndpointSelector.of([Requirement("any:app", "In", ("web",))])
IN_X = EndpointSelector.of([Requirement(NS, "In", ("x",))])


def labels(ns: str, app: str) -> dict[str, str]:
    return {NS: ns, "k8s:app": app}


def test_selector_sees_existing_and_new_identities():
    cache = SelectorCache()
    cache.upsert_identity(1000, labels("x", "web"))
    assert cache.add_selector(WEB) == {1000}
    assert cache.upsert_identity(1001, labels("y", "web")) == {WEB}
    assert cache.upsert_identity(1002, labels("y", "db")) == set()
    assert cache.selections(WEB) == {1000, 1001}
    assert cache.selects(WEB, 1001) and not cache.selects(WEB, 1002) and not cache.selects(WEB, 9999)


def test_relabel_and_remove_report_changed_selectors():
    cache = SelectorCache()
    cache.add_selectors([WEB, IN_X])
    assert cache.upsert_identity(1000, labels("x", "web")) == {WEB, IN_X}
    assert cache.upsert_identity(1000, labels("x", "web")) == set()  # no change, nothing to do
    assert cache.upsert_identity(1000, labels("x", "db")) == {WEB}
    assert cache.selections(WEB) == frozenset() and cache.selections(IN_X) == {1000}
    assert cache.remove_identity(1000) == {IN_X}
    assert cache.remove_identity(1000) == set()
    assert cache.labels(1000) is None


def test_selectors_are_reference_counted():
    cache = SelectorCache()
    cache.add_selector(WEB)
    cache.add_selector(WEB)
    cache.remove_selector(WEB)
    assert cache.is_registered(WEB)
    cache.remove_selector(WEB)
    assert not cache.is_registered(WEB) and len(cache) == 0
    cache.remove_selector(WEB)  # harmless
    cache.upsert_identity(1, {"reserved:host": ""})
    assert cache.upsert_identity(2, {"reserved:world": ""}) == set()  # unregistered selectors are not tracked
    assert cache.selections(EndpointSelector.of([Requirement("reserved:world", "Exists")])) == {2}


def test_cidr_selectors_in_the_cache():
    cache = SelectorCache()
    sel = CIDRSelector.parse("10.0.0.0/8", ["10.1.0.0/16"])
    cache.add_selector(sel)
    assert cache.upsert_identity(16777216 + 1, {"cidr:10.0.0.0/8": ""}) == {sel}
    assert cache.upsert_identity(16777216 + 2, {"cidr:10.1.0.0/16": ""}) == set()
    assert cache.selections(sel) == {16777217}


def policy(name: str, spec: dict, ns: str = "x") -> dict:
    return validate_object({"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
                            "metadata": {"name": name, "namespace": ns}, "spec": spec}, "test")


def test_repository_reports_affected_identities():
    repo = PolicyRepository()
    for ident, (ns, app) in {1000: ("x", "web"), 1001: ("x", "client"), 1002: ("y", "web")}.items():
        assert repo.upsert_identity(ident, labels(ns, app)) == {ident}
    allow = policy("allow", {"endpointSelector": {"matchLabels": {"app": "web"}},
                             "ingress": [{"fromEndpoints": [{"matchLabels": {"app": "client"}}]}]})
    origin = origin_of(allow)
    assert repo.set_policy(origin, rules_from_object(allow)) == {1000}  # web in x only (namespace scoping)
    res = resolve_endpoint(1000, repo.rules(), repo.cache)
    assert verdict(res, 1001, 6, 80) == ("allow", 0)

    # a new client identity changes the web endpoint's peers; an unrelated one only touches itself
    assert repo.upsert_identity(1003, labels("x", "client")) == {1003, 1000}
    assert repo.upsert_identity(1004, labels("z", "db")) == {1004}
    assert verdict(resolve_endpoint(1000, repo.rules(), repo.cache), 1003, 6, 80) == ("allow", 0)
    # relabelling: the endpoint moves out of the subject selector
    assert repo.upsert_identity(1000, labels("x", "api")) == {1000}
    assert not resolve_endpoint(1000, repo.rules(), repo.cache).ingress_enforced
    assert repo.remove_identity(1003) == {1003}  # no subject left to recompute but the identity itself

    # replacing the policy touches old and new subjects; deleting forgets its selectors
    repo.upsert_identity(1000, labels("x", "web"))
    new = policy("allow", {"endpointSelector": {"matchLabels": {"app": "client"}}, "ingress": [{}]})
    assert repo.set_policy(origin, rules_from_object(new)) == {1000, 1001}
    assert repo.delete_policy(origin) == {1001}
    assert repo.rules() == [] and len(repo.cache) == 0 and repo.policies() == {}


def test_repository_entity_rules_are_recomputed_on_identity_changes():
    repo = PolicyRepository()
    repo.upsert_identity(1000, labels("x", "web"))
    obj = policy("e", {"endpointSelector": {}, "ingress": [{"fromEntities": ["cluster"]}]})
    repo.set_policy(origin_of(obj), rules_from_object(obj))
    assert repo.upsert_identity(1001, labels("x", "db")) == {1000, 1001}
