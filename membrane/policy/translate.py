"""Any validated network policy object -> its rules, dispatching on ``kind``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from membrane.policy.context import PolicyContext
from membrane.policy.knp import rules_from_network_policy
from membrane.policy.rules import Origin, Rule, rules_from_cilium_policy

POLICY_KINDS = ("CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy", "NetworkPolicy")


def rules_from_object(obj: Mapping[str, Any], context: PolicyContext | None = None) -> list[Rule]:
    """The rules of one CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy or NetworkPolicy."""
    if obj.get("kind") == "NetworkPolicy":
        return rules_from_network_policy(obj)
    return rules_from_cilium_policy(obj, context)


def origin_of(obj: Mapping[str, Any]) -> Origin:
    """The origin the rules of ``obj`` carry (used to replace a policy by a new version)."""
    meta = obj.get("metadata") or {}
    clusterwide = obj.get("kind") == "CiliumClusterwideNetworkPolicy"
    return Origin(str(obj.get("kind")), "" if clusterwide else meta.get("namespace") or "default", meta.get("name", ""))


def replace_policies(current: Iterable[Rule], objects: Iterable[Mapping[str, Any]],
                     context: PolicyContext | None = None) -> list[Rule]:
    """``current`` with every policy in ``objects`` added or replaced (what applying them would give)."""
    objs = [o for o in objects if o.get("kind") in POLICY_KINDS]
    replaced = {origin_of(o) for o in objs}
    out = [r for r in current if r.origin not in replaced]
    for obj in objs:
        out.extend(rules_from_object(obj, context))
    return out
