"""CiliumCIDRGroup: validation, and cidrGroupRef / cidrGroupSelector resolving to the group's CIDRs."""

from __future__ import annotations

import ipaddress

import pytest

from membrane.model.errors import ValidationError
from membrane.model.kinds import lookup_kind
from membrane.model.validate import validate_object
from membrane.policy.cidrgroups import CIDRGroup, cidr_groups, group_selectors
from membrane.policy.context import PolicyContext
from membrane.policy.rules import rules_from_cilium_policy
from membrane.policy.selector import CIDRSelector
from membrane.policy.translate import replace_policies


def group(name: str, cidrs: list, labels: dict | None = None, version: str = "cilium.io/v2alpha1") -> dict:
    meta = {"name": name, **({"labels": labels} if labels else {})}
    return validate_object({"apiVersion": version, "kind": "CiliumCIDRGroup", "metadata": meta,
                            "spec": {"externalCIDRs": cidrs}}, "g.yaml")


def cnp(entries: list, deny: bool = False) -> dict:
    key = "egressDeny" if deny else "egress"
    return validate_object({"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
                            "metadata": {"name": "p", "namespace": "default"},
                            "spec": {"endpointSelector": {}, key: [{"toCIDRSet": entries}]}}, "p.yaml")


def test_group_is_a_cluster_scoped_kind_in_both_api_versions():
    info = lookup_kind("ccg")
    assert info.kind == "CiliumCIDRGroup" and not info.namespaced
    g = group("g", ["192.0.2.0/24", "198.51.100.7"], version="cilium.io/v2")
    assert "namespace" not in g["metadata"]


@pytest.mark.parametrize(("spec", "message"), [
    (None, "g.yaml: spec: Required value: a CiliumCIDRGroup needs spec.externalCIDRs"),
    ({}, "g.yaml: spec.externalCIDRs: Required value"),
    ({"externalCIDRs": ["10.0.0.0/33"]}, "g.yaml: spec.externalCIDRs[0]: Invalid value"),
    ({"externalCIDRs": [], "cidrs": []}, 'g.yaml: spec: unknown field "spec.cidrs"'),
])
def test_bad_groups_are_refused_precisely(spec, message):
    obj = {"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumCIDRGroup", "metadata": {"name": "g"}}
    if spec is not None:
        obj["spec"] = spec
    with pytest.raises(ValidationError) as exc:
        validate_object(obj, "g.yaml")
    assert str(exc.value).startswith(message)


GROUPS = cidr_groups([group("a", ["192.0.2.0/24", "203.0.113.12"], {"env": "prod"}),
                      group("b", ["198.51.100.0/24"], {"env": "dev"}), {"kind": "Pod"}])


def test_groups_from_objects():
    assert GROUPS["a"] == CIDRGroup("a", {"env": "prod"}, ("192.0.2.0/24", "203.0.113.12"))
    assert set(GROUPS) == {"a", "b"}


def test_ref_stands_for_each_cidr_with_the_excepts_inside_it():
    sels = group_selectors({"cidrGroupRef": "a", "except": ["192.0.2.128/25"]}, GROUPS)
    assert sels == [CIDRSelector.parse("192.0.2.0/24", ["192.0.2.128/25"]), CIDRSelector.parse("203.0.113.12/32")]


def test_selector_picks_groups_by_label_and_unknown_refs_select_nothing():
    assert group_selectors({"cidrGroupSelector": {"matchLabels": {"env": "dev"}}}, GROUPS) == [
        CIDRSelector.parse("198.51.100.0/24")]
    assert len(group_selectors({"cidrGroupSelector": {}}, GROUPS)) == 3
    assert group_selectors({"cidrGroupRef": "missing"}, GROUPS) == []


def test_rules_resolve_groups_and_a_missing_group_selects_nothing_rather_than_everything():
    [rule] = rules_from_cilium_policy(cnp([{"cidrGroupRef": "a"}], deny=True), PolicyContext(GROUPS))
    assert rule.deny and [str(c.cidr) for c in rule.cidrs] == ["192.0.2.0/24", "203.0.113.12/32"]
    [rule] = rules_from_cilium_policy(cnp([{"cidrGroupRef": "a"}]))
    assert rule.cidrs == () and not rule.l3_wildcard and rule.default_deny
    net = ipaddress.ip_network("203.0.113.12/32")
    [rule] = replace_policies([], [cnp([{"cidrGroupSelector": {"matchLabels": {"env": "prod"}}}])],
                              PolicyContext(GROUPS))
    assert net in {c.cidr for c in rule.cidrs}
