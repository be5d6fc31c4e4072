"""Kubernetes NetworkPolicy (networking.k8s.io/v1) translated into :class:`Rule` values (reference §3.6).

Every NetworkPolicy rule is an allow rule that switches its subjects to default-deny for the
directions in ``policyTypes``; a listed direction without rules yields one rule that allows
nothing. An empty or missing ``from``/``to`` means every peer (world included); pod selectors act
on ``k8s:`` labels of the policy's namespace, namespace selectors on
``io.cilium.k8s.namespace.labels.*`` (``{}`` = any namespace); ``ipBlock`` is a CIDR rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from membrane.model.labels import LabelSelector, Requirement
from membrane.policy.rules import EGRESS, INGRESS, NAMESPACE_LABEL, Origin, PortSpec, Rule, scope_subject
from membrane.policy.selector import NAMESPACE_LABELS_PREFIX, CIDRSelector, EndpointSelector


def _k8s_selector(data: Any) -> EndpointSelector:
    return EndpointSelector.from_label_selector(LabelSelector.from_dict(data or {}), default_source="k8s")


def _namespace_selector(data: Any) -> EndpointSelector:
    sel = LabelSelector.from_dict(data or {})
    if sel.is_empty:
        return EndpointSelector.of([Requirement(NAMESPACE_LABEL, "Exists")])
    reqs = [Requirement(f"k8s:{NAMESPACE_LABELS_PREFIX}{k}", "In", (v,)) for k, v in sel.match_labels]
    reqs += [
        Requirement(f"k8s:{NAMESPACE_LABELS_PREFIX}{r.key}", r.operator, tuple(sorted(r.values)))
        for r in sel.match_expressions
    ]
    return EndpointSelector.of(reqs)


def _peer(peer: Mapping[str, Any], namespace: str) -> EndpointSelector | CIDRSelector:
    block = peer.get("ipBlock")
    if block is not None:
        return CIDRSelector.parse(block["cidr"], block.get("except") or ())
    pods = _k8s_selector(peer.get("podSelector"))
    if peer.get("namespaceSelector") is None:
        return pods.with_requirement(Requirement(NAMESPACE_LABEL, "In", (namespace,)))
    return EndpointSelector.of((*pods.requirements, *_namespace_selector(peer["namespaceSelector"]).requirements))


def _ports(ports: Any) -> tuple[PortSpec, ...] | None:
    if not ports:
        return None
    out = []
    for p in ports:
        protocol = p.get("protocol") or "TCP"
        port = p.get("port")
        if isinstance(port, str):
            out.append(PortSpec(0, 0, protocol, port.lower()))
        else:
            number = int(port or 0)
            end = int(p.get("endPort") or 0)
            out.append(PortSpec(number, end if end > number else 0, protocol))
    return tuple(out)


def rules_from_network_policy(obj: Mapping[str, Any]) -> list[Rule]:
    """The rules of one validated NetworkPolicy."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    origin = Origin("NetworkPolicy", namespace, meta.get("name", ""))
    spec = obj.get("spec") or {}
    subject = scope_subject(_k8s_selector(spec.get("podSelector")), namespace)
    types = spec.get("policyTypes") or (["Ingress", "Egress"] if spec.get("egress") else ["Ingress"])
    out: list[Rule] = []
    for direction, peers_key in ((INGRESS, "from"), (EGRESS, "to")):
        if direction.capitalize() not in types:
            continue
        items = spec.get(direction) or []
        if not items:
            out.append(Rule(origin, subject, direction, deny=False, default_deny=True))
        for item in items:
            selectors = [_peer(p, namespace) for p in item.get(peers_key) or []]
            out.append(Rule(
                origin=origin,
                subject=subject,
                direction=direction,
                deny=False,
                default_deny=True,
                endpoints=tuple(dict.fromkeys(s for s in selectors if isinstance(s, EndpointSelector))),
                cidrs=tuple(dict.fromkeys(s for s in selectors if isinstance(s, CIDRSelector))),
                l3_wildcard=not selectors,
                ports=_ports(item.get("ports")),
            ))
    return out
