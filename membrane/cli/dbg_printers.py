"""cilium-dbg-style output: ``endpoint list`` here, ``status`` in membrane.cli.dbg_status (re-exported).

Endpoint objects use the JSON shape of Cilium's API model (``models.Endpoint``), so ``-o json`` output of
the agent's endpoint list reads like cilium-dbg's::

    {"id": 1234,
     "status": {
        "identity": {"id": 54400},
        "labels": {"security-relevant": ["k8s:app=web", "k8s:io.kubernetes.pod.namespace=default"]},
        "networking": {"addressing": [{"ipv4": "10.0.1.23", "ipv6": ""}]},
        "policy": {"realized": {"policy-enabled": "none" | "ingress" | "egress" | "both"
                                                  | "audit-ingress" | "audit-egress" | "audit-both"}},
        "state": "ready"}}

Any part may be missing; the columns then read ``Unknown`` (policy, addresses, state), ``No address``
(empty addressing), ``<no label id>`` (identity) or ``no labels``, as cilium-dbg prints them.
"""

from __future__ import annotations

from typing import Any

from membrane.cli.dbg_status import render_status
from membrane.cli.tabwriter import tabwrite

__all__ = ["render_endpoint_list", "render_status"]

ENABLED, DISABLED, AUDIT, UNKNOWN = "Enabled", "Disabled", "Disabled (Audit)", "Unknown"

POLICY_MODES = {
    "none": (DISABLED, DISABLED),
    "both": (ENABLED, ENABLED),
    "ingress": (ENABLED, DISABLED),
    "egress": (DISABLED, ENABLED),
    "audit-both": (AUDIT, AUDIT),
    "audit-ingress": (AUDIT, DISABLED),
    "audit-egress": (DISABLED, AUDIT),
}


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _policy_modes(ep: dict[str, Any]) -> tuple[str, str]:
    realized = _get(ep, "status", "policy", "realized")
    if not isinstance(realized, dict):
        return UNKNOWN, UNKNOWN
    return POLICY_MODES.get(str(realized.get("policy-enabled")), (UNKNOWN, UNKNOWN))


def _addresses(ep: dict[str, Any]) -> tuple[str, str]:
    networking = _get(ep, "status", "networking")
    if not isinstance(networking, dict):
        return UNKNOWN, UNKNOWN
    addressing = networking.get("addressing") or []
    if not addressing:
        return "No address", "No address"
    first = addressing[0] if isinstance(addressing[0], dict) else {}
    return str(first.get("ipv6") or ""), str(first.get("ipv4") or "")


def _labels(ep: dict[str, Any]) -> list[str]:
    labels = _get(ep, "status", "labels", "security-relevant")
    if not labels:
        return ["no labels"]
    return sorted(str(label) for label in labels)


def _identity(ep: dict[str, Any]) -> str:
    identity = _get(ep, "status", "identity")
    if not isinstance(identity, dict):
        return "<no label id>"
    return str(identity.get("id", 0))


def render_endpoint_list(endpoints: list[dict[str, Any]], no_headers: bool = False, node_column: bool = False) -> str:
    """``cilium-dbg endpoint list``: sorted by endpoint id, two header lines, one label per line.

    ``node_column``: endpoints of several nodes (ids repeat across nodes), sorted by node then id,
    with a leading NODE column taken from each endpoint's ``node``.
    """
    lines = []
    lead = "NODE\t" if node_column else ""
    blank = "\t" if node_column else ""
    if not no_headers:
        lines.append(f"{lead}ENDPOINT\tPOLICY (ingress)\tPOLICY (egress)\tIDENTITY\tLABELS (source:key[=value])\t"
                     "IPv6\tIPv4\tSTATUS\t")
        lines.append(f"{blank}\tENFORCEMENT\tENFORCEMENT\t\t\t\t\t")
    for ep in sorted(endpoints, key=lambda e: (str(e.get("node", "")) if node_column else "", e.get("id") or 0)):
        ingress, egress = _policy_modes(ep)
        ipv6, ipv4 = _addresses(ep)
        state = _get(ep, "status", "state")
        node = f"{ep.get('node', '')}\t" if node_column else ""
        for index, label in enumerate(_labels(ep)):
            if index == 0:
                lines.append(f"{node}{ep.get('id', 0)}\t{ingress}\t{egress}\t{_identity(ep)}\t{label}\t{ipv6}\t{ipv4}\t"
                             f"{state if state else UNKNOWN}\t")
            else:
                lines.append(f"{blank}\t\t\t\t{label}\t\t\t\t")
    return tabwrite("\n".join(lines), minwidth=5, padding=3)
