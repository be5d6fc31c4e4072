"""The policies as stored: CiliumNetworkPolicies, NetworkPolicies and CiliumClusterwideNetworkPolicies,
read for ``membrane policy get`` and ``policy simulate``."""

from __future__ import annotations

from typing import Any

POLICY_STORE_KINDS = (("cilium.io", "CiliumNetworkPolicy"), ("cilium.io", "CiliumClusterwideNetworkPolicy"),
                      ("networking.k8s.io", "NetworkPolicy"))


def stored_policies(store: Any, namespace: str | None) -> tuple[list[dict[str, Any]], int]:
    """CNPs and NetworkPolicies (of ``namespace``, or all) plus every CCNP, and the newest revision read."""
    objs: list[dict[str, Any]] = []
    revision = 0
    for group, kind in POLICY_STORE_KINDS:
        ns = None if kind == "CiliumClusterwideNetworkPolicy" else namespace
        found, rev = store.list(group, kind, ns)
        objs.extend(found)
        revision = max(revision, int(rev))
    return objs, revision
