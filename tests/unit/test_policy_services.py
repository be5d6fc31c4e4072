"""toServices: a Service named or selected by label stands for its backend pods (its pod selector in
its namespace); Services without a selector, and unknown ones, select nothing."""

from __future__ import annotations

from membrane.model.validate import validate_object
from membrane.policy.context import PolicyContext, uses_context
from membrane.policy.rules import rules_from_cilium_policy
from membrane.policy.selector import IdentityLabels
from membrane.policy.services import ServiceInfo, selected_services, service_table


def svc(name: str, ns: str = "default", selector: dict | None = None, labels: dict | None = None) -> dict:
    meta = {"name": name, "namespace": ns, **({"labels": labels} if labels else {})}
    spec = {"ports": [{"port": 80}], **({"selector": selector} if selector else {})}
    return validate_object({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}, "s.yaml")


def cnp(entries: list, ns: str = "default", kind: str = "CiliumNetworkPolicy") -> dict:
    meta = {"name": "p"} if kind == "CiliumClusterwideNetworkPolicy" else {"name": "p", "namespace": ns}
    return validate_object({"apiVersion": "cilium.io/v2", "kind": kind, "metadata": meta,
                            "spec": {"endpointSelector": {}, "egress": [{"toServices": entries}]}}, "p.yaml")


CONTEXT = PolicyContext.from_objects([
    svc("web", selector={"app": "web"}, labels={"tier": "front"}),
    svc("web", ns="shop", selector={"app": "web"}, labels={"tier": "front"}),
    svc("db", ns="shop", selector={"app": "db"}, labels={"tier": "back"}),
    svc("external", labels={"tier": "front"}),
])


def pod(app: str, ns: str) -> IdentityLabels:
    return IdentityLabels.of({"k8s:app": app, "k8s:io.kubernetes.pod.namespace": ns})


def test_table_keeps_names_labels_and_selectors():
    assert CONTEXT.services[("shop", "db")] == ServiceInfo("shop", "db", (("tier", "back"),), (("app", "db"),))
    assert CONTEXT.services[("default", "external")].selector is None
    assert service_table([{"kind": "Pod"}]) == {}


def test_by_name_defaults_to_the_policys_namespace():
    by_name = {"k8sService": {"serviceName": "web"}}
    assert [s.namespace for s in selected_services(by_name, CONTEXT.services, "shop")] == ["shop"]
    assert [s.namespace for s in selected_services(by_name, CONTEXT.services, "default")] == ["default"]
    assert selected_services({"k8sService": {"serviceName": "nope"}}, CONTEXT.services, "shop") == []


def test_by_label_in_a_namespace_or_anywhere_for_clusterwide():
    front = {"k8sServiceSelector": {"selector": {"matchLabels": {"tier": "front"}}}}
    assert [(s.namespace, s.name) for s in selected_services(front, CONTEXT.services, "shop")] == [("shop", "web")]
    assert [(s.namespace, s.name) for s in selected_services(front, CONTEXT.services, "")] == [
        ("default", "external"), ("default", "web"), ("shop", "web")]


def test_rule_selects_exactly_the_backends_of_the_named_service():
    [rule] = rules_from_cilium_policy(cnp([{"k8sService": {"serviceName": "web", "namespace": "shop"}}]), CONTEXT)
    [peer] = rule.endpoints
    assert peer.matches(pod("web", "shop"))
    assert not peer.matches(pod("web", "default")) and not peer.matches(pod("db", "shop"))
    assert rule.default_deny and not rule.l3_wildcard


def test_selectorless_or_unknown_services_select_nothing():
    [rule] = rules_from_cilium_policy(cnp([{"k8sService": {"serviceName": "external"}}]), CONTEXT)
    assert rule.endpoints == () and not rule.l3_wildcard
    [rule] = rules_from_cilium_policy(cnp([{"k8sService": {"serviceName": "web"}}]))  # no context
    assert rule.endpoints == ()


def test_context_compares_by_content_and_updates():
    assert PolicyContext.from_objects([svc("web", selector={"app": "web"})]) == \
        PolicyContext.from_objects([svc("web", selector={"app": "web"})])
    changed = CONTEXT.updated([svc("db", ns="shop", selector={"app": "db2"})])
    assert changed != CONTEXT and changed.services[("shop", "db")].selector == (("app", "db2"),)
    assert changed.services[("shop", "web")] == CONTEXT.services[("shop", "web")]


def test_uses_context_only_for_policies_naming_groups_or_services():
    assert uses_context(cnp([{"k8sService": {"serviceName": "web"}}]))
    plain = validate_object({"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
                             "metadata": {"name": "p", "namespace": "default"},
                             "spec": {"endpointSelector": {}, "egress": [{"toCIDRSet": [{"cidr": "10.0.0.0/8"}]}]}},
                            "p.yaml")
    assert not uses_context(plain)
    plain["spec"]["egress"][0]["toCIDRSet"].append({"cidrGroupRef": "g"})
    assert uses_context(plain)
