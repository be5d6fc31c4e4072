"""The internal rule model, and its construction from validated Cilium policies.

One :class:`Rule` per direction item (an entry of ``ingress``/``ingressDeny``/``egress``/
``egressDeny``), carrying its subject selector, peers, ports and whether the policy rule it came
from switches its subjects to default-deny in that direction (``enableDefaultDeny``; unset = the
direction has items). Namespace scoping (reference §2.10) is applied here: a CiliumNetworkPolicy's
subject is forced into its namespace and peer selectors that name no namespace get it; a clusterwide
policy's peer selectors get "any namespace". NetworkPolicy translation lives in ``knp``.

Callers pass objects already checked by :func:`membrane.model.validate.validate_object`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from membrane.model.fqdn import selector_key
from membrane.model.labels import LabelSelector, Requirement
from membrane.model.policy_ports import icmp_type_number
from membrane.policy.cidrgroups import group_selectors
from membrane.policy.context import PolicyContext
from membrane.policy.l7 import L7PortRule, l7_port_rules
from membrane.policy.selector import (
    NAMESPACE_KEY,
    NAMESPACE_LABELS_PREFIX,
    CIDRSelector,
    EndpointSelector,
    Network,
    Selector,
)
from membrane.policy.services import service_peers

INGRESS, EGRESS = "ingress", "egress"
NAMESPACE_LABEL = f"k8s:{NAMESPACE_KEY}"
_UNSUPPORTED_PEERS: tuple[str, ...] = ()
_PEER_KEYS = {
    INGRESS: ("fromEndpoints", "fromCIDR", "fromCIDRSet", "fromEntities", "fromNodes", "fromGroups"),
    EGRESS: ("toEndpoints", "toCIDR", "toCIDRSet", "toEntities", "toNodes", "toGroups", "toServices", "toFQDNs"),
}


@dataclass(frozen=True)
class Origin:
    """Where a rule came from."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace + '/' if self.namespace else ''}{self.name}"


@dataclass(frozen=True)
class PortSpec:
    """One port: ``port`` 0 = any; ``end_port`` > ``port`` = a range; ``name`` = a named port."""

    port: int = 0
    end_port: int = 0
    protocol: str = "ANY"  # TCP | UDP | SCTP | ICMP | ANY
    name: str = ""


@dataclass(frozen=True)
class ICMPSpec:
    family: str  # IPv4 | IPv6
    type: int


@dataclass(frozen=True)
class Rule:
    """One allow or deny item of a policy, applied to the endpoints ``subject`` selects."""

    origin: Origin
    subject: EndpointSelector
    direction: str
    deny: bool
    default_deny: bool
    endpoints: tuple[EndpointSelector, ...] = ()
    cidrs: tuple[CIDRSelector, ...] = ()
    entities: tuple[str, ...] = ()
    l3_wildcard: bool = False  # no peer field: any peer
    ports: tuple[PortSpec, ...] | None = None  # None: every port and protocol (incl. ICMP)
    icmps: tuple[ICMPSpec, ...] = ()
    has_l7: bool = False
    l7: tuple[L7PortRule, ...] = ()  # the L7 parts of its toPorts (membrane.policy.l7)
    node_selector: EndpointSelector | None = None  # clusterwide host policy (subject = host endpoints)
    unsupported: tuple[str, ...] = ()  # peer kinds accepted but not enforced here
    fqdns: tuple[str, ...] = ()  # toFQDNs selectors (canonical text); their selectors are in ``endpoints``
    log: str = ""  # the policy's ``log.value``: copied into Hubble's ``policy_log`` for flows it decides

    @property
    def peer_selectors(self) -> tuple[Selector, ...]:
        return (*self.endpoints, *self.cidrs)

    @property
    def selectors(self) -> tuple[Selector, ...]:
        """Every selector the rule needs in the selector cache (subject first)."""
        return (self.subject, *self.endpoints, *self.cidrs)

    @property
    def l4_all(self) -> bool:
        """No ``toPorts`` and no ``icmps``: every port and protocol."""
        return self.ports is None and not self.icmps


def prefixes_used(rules: Iterable[Rule]) -> set[Network]:
    """CIDR prefixes (with excepts) the ipcache must hold CIDR identities for."""
    return {p for r in rules for c in r.cidrs for p in c.prefixes()}


def rules_from_cilium_policy(obj: Mapping[str, Any], context: PolicyContext | None = None) -> list[Rule]:
    """The rules of one validated CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy.

    ``context``: the CiliumCIDRGroups and Services that ``cidrGroupRef``/``cidrGroupSelector`` and
    ``toServices`` entries resolve against (none given: such entries select nothing).
    """
    kind = obj.get("kind")
    if kind not in ("CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"):
        raise ValueError(f"not a Cilium network policy kind: {kind!r}")
    meta = obj.get("metadata") or {}
    clusterwide = kind == "CiliumClusterwideNetworkPolicy"
    origin = Origin(kind, "" if clusterwide else meta.get("namespace") or "default", meta.get("name", ""))
    specs = ([obj["spec"]] if obj.get("spec") is not None else []) + list(obj.get("specs") or [])
    out: list[Rule] = []
    for spec in specs:
        out.extend(_rules_of_spec(spec, origin, context or PolicyContext()))
    return out


def scope_subject(sel: EndpointSelector, namespace: str) -> EndpointSelector:
    """A namespaced policy's subject: only its namespace (any user value is replaced)."""
    if not namespace or sel.mentions(source="reserved"):
        return sel
    return sel.without_bare_key(NAMESPACE_KEY).with_requirement(Requirement(NAMESPACE_LABEL, "In", (namespace,)))


def scope_peer(sel: EndpointSelector, namespace: str) -> EndpointSelector:
    """A peer selector naming no namespace: the policy's namespace, or any namespace (clusterwide)."""
    if sel.mentions(NAMESPACE_KEY, prefix=NAMESPACE_LABELS_PREFIX, source="reserved"):
        return sel
    if namespace:
        return sel.with_requirement(Requirement(NAMESPACE_LABEL, "In", (namespace,)))
    return sel.with_requirement(Requirement(NAMESPACE_LABEL, "Exists"))


def _selector(data: Any) -> EndpointSelector:
    return EndpointSelector.from_label_selector(LabelSelector.from_dict(data or {}, sources=True))


def _rules_of_spec(spec: Mapping[str, Any], origin: Origin, context: PolicyContext) -> list[Rule]:
    node_selector = None
    if spec.get("nodeSelector") is not None:
        node_selector = _selector(spec["nodeSelector"])
        subject = EndpointSelector.of([Requirement("reserved:host", "Exists")])
    else:
        subject = scope_subject(_selector(spec.get("endpointSelector")), origin.namespace)
    flags = spec.get("enableDefaultDeny") or {}
    out: list[Rule] = []
    for direction in (INGRESS, EGRESS):
        allow_items = spec.get(direction) or []
        deny_items = spec.get(direction + "Deny") or []
        default_deny = flags.get(direction)
        if default_deny is None:
            default_deny = bool(allow_items or deny_items)
        for deny, items in ((False, allow_items), (True, deny_items)):
            for item in items:
                out.append(_rule_of_item(item, origin, subject, direction, deny, bool(default_deny), node_selector,
                                         context))
    log = str((spec.get("log") or {}).get("value") or "")
    return [dataclasses.replace(r, log=log) for r in out] if log else out


def _rule_of_item(
    item: Mapping[str, Any],
    origin: Origin,
    subject: EndpointSelector,
    direction: str,
    deny: bool,
    default_deny: bool,
    node_selector: EndpointSelector | None,
    context: PolicyContext,
) -> Rule:
    prefix = "from" if direction == INGRESS else "to"
    endpoints = [scope_peer(_selector(s), origin.namespace) for s in item.get(prefix + "Endpoints") or []]
    for s in item.get(prefix + "Nodes") or []:
        endpoints.append(_selector(s).with_requirement(Requirement("reserved:remote-node", "Exists")))
    cidrs = [CIDRSelector.parse(c) for c in item.get(prefix + "CIDR") or []]
    for c in item.get(prefix + "CIDRSet") or []:
        if c.get("cidr"):
            cidrs.append(CIDRSelector.parse(c["cidr"], c.get("except") or ()))
        else:
            cidrs.extend(group_selectors(c, context.cidr_groups))
    for entry in item.get("toServices") or []:
        endpoints.extend(service_peers(entry, context.services, origin.namespace))
    fqdns = tuple(dict.fromkeys(selector_key(s) for s in item.get("toFQDNs") or []))
    endpoints.extend(fqdn_selector(k) for k in fqdns)
    has_peer_field = any(item.get(k) is not None for k in _PEER_KEYS[direction])
    port_rules = item.get("toPorts") or []
    icmps = tuple(
        ICMPSpec(f.get("family") or "IPv4", _icmp_type(f))
        for rule in item.get("icmps") or [] for f in rule.get("fields") or []
    )
    ports: tuple[PortSpec, ...] | None = None
    if port_rules:
        ports = tuple(p for pr in port_rules for p in _port_specs(pr.get("ports")))
    return Rule(
        origin=origin,
        subject=subject,
        direction=direction,
        deny=deny,
        default_deny=default_deny,
        endpoints=tuple(dict.fromkeys(endpoints)),
        cidrs=tuple(dict.fromkeys(cidrs)),
        entities=tuple(dict.fromkeys(item.get(prefix + "Entities") or [])),
        l3_wildcard=not has_peer_field and bool(port_rules or icmps),
        ports=ports,
        icmps=icmps,
        has_l7=any(pr.get("rules") for pr in port_rules),
        l7=l7_port_rules(port_rules, _port_specs) if not deny else (),
        node_selector=node_selector,
        unsupported=tuple(k for k in _UNSUPPORTED_PEERS if item.get(k)),
        fqdns=fqdns,
    )


def fqdn_selector(key: str) -> EndpointSelector:
    """A ``toFQDNs`` selector: the identities the DNS proxy gave the IPs its names resolved to carry
    ``fqdn:<key>`` (membrane.fqdn.identities). Never namespace-scoped: those identities have none."""
    return EndpointSelector.of([Requirement(f"fqdn:{key}", "Exists")])


def _icmp_type(field: Mapping[str, Any]) -> int:
    value = field.get("type")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return icmp_type_number(field.get("family") or "IPv4", value)  # type: ignore[arg-type]


def _port_specs(ports: Any) -> tuple[PortSpec, ...]:
    """A PortRule's ``ports``; none listed means every port of every protocol."""
    if not ports:
        return (PortSpec(),)
    out = []
    for p in ports:
        text = str(p.get("port") or "")
        protocol = (p.get("protocol") or "ANY").upper()
        if text.isdigit() or not text:
            number = int(text or 0)
            end = int(p.get("endPort") or 0)
            out.append(PortSpec(number, end if number and end > number else 0, protocol))
        else:
            out.append(PortSpec(0, 0, protocol, text.lower()))
    return tuple(out)
