"""CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy: structural validation of rules.

A policy carries one rule in ``spec`` and/or several in ``specs``. Each rule selects its subjects with
``endpointSelector`` (or, clusterwide only, ``nodeSelector``) and lists allow/deny items per
direction. Checked here: known fields at every level, selector and CIDR syntax, entity names, and
the combinations Cilium's sanitizer rejects (a rule without any direction items, several L3 peer
kinds in one item, ``icmps`` together with ``toPorts``).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from membrane.model.errors import ValidationError
from membrane.model.fields import (
    Fields,
    as_list,
    as_str,
    check_cidr,
    forbidden,
    index,
    invalid,
    missing,
    unsupported,
)
from membrane.model.fqdn import check_fqdn_selector
from membrane.model.labels import check_selector
from membrane.model.policy_ports import check_icmp_rule, check_port_rule

ENTITIES = (
    "host", "remote-node", "kube-apiserver", "ingress", "cluster", "init", "health", "unmanaged", "world",
    "world-ipv4", "world-ipv6", "all", "none", "cluster-mesh",
)
RULE_FIELDS = (
    "endpointSelector", "nodeSelector", "ingress", "ingressDeny", "egress", "egressDeny", "enableDefaultDeny",
    "labels", "description", "log",
)
DIRECTIONS = ("ingress", "ingressDeny", "egress", "egressDeny")
_INGRESS_PEERS = ("fromEndpoints", "fromCIDR", "fromCIDRSet", "fromEntities", "fromNodes", "fromGroups")
_EGRESS_PEERS = (
    "toEndpoints", "toCIDR", "toCIDRSet", "toEntities", "toServices", "toFQDNs", "toNodes", "toGroups",
)
_ITEM_FIELDS = {
    "ingress": (*_INGRESS_PEERS, "fromRequires", "toPorts", "icmps", "authentication"),
    "ingressDeny": (*_INGRESS_PEERS, "fromRequires", "toPorts", "icmps"),
    "egress": (*_EGRESS_PEERS, "toRequires", "toPorts", "icmps", "authentication"),
    "egressDeny": tuple(k for k in _EGRESS_PEERS if k != "toFQDNs") + ("toRequires", "toPorts", "icmps"),
}
CIDR_RULE_FIELDS = ("cidr", "cidrGroupRef", "cidrGroupSelector", "except")
AUTH_MODES = ("disabled", "required", "test-always-fail")
GROUPS_REFUSED = ("selects cloud-provider groups (AWS security groups), which only Cilium's cloud-provider "
                  "integration (ENI IPAM) resolves; there is no cloud provider here, use toCIDRSet or toEndpoints")


def _check_cidr_rule(data: Any, path: str) -> None:
    """``{cidr | cidrGroupRef | cidrGroupSelector, except: [...]}``; each except lies inside cidr."""
    f = Fields(data, path, CIDR_RULE_FIELDS)
    cidr = f.string("cidr")
    ref = f.string("cidrGroupRef")
    given = [k for k, v in (("cidr", cidr), ("cidrGroupRef", ref), ("cidrGroupSelector", f.raw("cidrGroupSelector")))
             if v]
    if len(given) != 1:
        why = "exactly one of cidr, cidrGroupRef or cidrGroupSelector must be set"
        raise invalid(path, {k: f.raw(k) for k in given}, why) if given else missing(f.at("cidr"), why)
    if f.has("cidrGroupSelector"):
        check_selector(f.raw("cidrGroupSelector"), f.at("cidrGroupSelector"))
    outer = ipaddress.ip_network(check_cidr(cidr, f.at("cidr"), allow_bare_ip=True), strict=False) if cidr else None
    for epath, value in f.each("except"):
        inner = ipaddress.ip_network(check_cidr(as_str(value, epath), epath, allow_bare_ip=True), strict=False)
        if outer is not None and (inner.version != outer.version or not inner.subnet_of(outer)):
            raise invalid(epath, value, f"must be contained in cidr {cidr!r}")


def _check_services(data: Any, path: str) -> None:
    f = Fields(data, path, ("k8sService", "k8sServiceSelector"))
    if f.has("k8sService") == f.has("k8sServiceSelector"):
        raise invalid(path, data, "exactly one of k8sService or k8sServiceSelector must be set")
    if f.has("k8sService"):
        s = Fields(f.raw("k8sService"), f.at("k8sService"), ("serviceName", "namespace"))
        s.string("serviceName", required=True)
        s.string("namespace")
    else:
        s = Fields(f.raw("k8sServiceSelector"), f.at("k8sServiceSelector"), ("selector", "namespace"))
        check_selector(s.mapping("selector", required=True), s.at("selector"))
        s.string("namespace")


def _check_groups(data: Any, path: str) -> None:
    f = Fields(data, path, ("aws",))
    aws = Fields(f.mapping("aws", required=True), f.at("aws"),
                 ("securityGroupsIds", "securityGroupsNames", "labels", "region"))
    aws.strings("securityGroupsIds")
    aws.strings("securityGroupsNames")
    aws.string_map("labels")
    aws.string("region")
    raise forbidden(path, GROUPS_REFUSED)


def _check_item(data: Any, path: str, direction: str) -> None:
    """One entry of ingress/ingressDeny/egress/egressDeny."""
    f = Fields(data, path, _ITEM_FIELDS[direction])
    deny = direction.endswith("Deny")
    for key in ("fromEndpoints", "toEndpoints", "fromRequires", "toRequires", "fromNodes", "toNodes"):
        for spath, sel in f.each(key):
            check_selector(sel, spath, sources=True)
    for key in ("fromCIDR", "toCIDR"):
        for cpath, value in f.each(key):
            check_cidr(as_str(value, cpath), cpath, allow_bare_ip=True)
    for key in ("fromCIDRSet", "toCIDRSet"):
        for cpath, value in f.each(key):
            _check_cidr_rule(value, cpath)
    for key in ("fromEntities", "toEntities"):
        for epath, value in f.each(key):
            if value not in ENTITIES:
                raise unsupported(epath, value, ENTITIES)
    for key in ("fromGroups", "toGroups"):
        for gpath, value in f.each(key):
            _check_groups(value, gpath)
    for spath, value in f.each("toServices"):
        _check_services(value, spath)
    for qpath, value in f.each("toFQDNs"):
        check_fqdn_selector(value, qpath)
    for ppath, value in f.each("toPorts"):
        check_port_rule(value, ppath, deny=deny)
    for ipath, value in f.each("icmps"):
        check_icmp_rule(value, ipath)
    if f.has("authentication"):
        Fields(f.raw("authentication"), f.at("authentication"), ("mode",)).choice("mode", AUTH_MODES, required=True)
    peers = [k for k in (_INGRESS_PEERS if direction.startswith("ingress") else _EGRESS_PEERS) if f.raw(k)]
    if len(peers) > 1:
        raise ValidationError(f"combining {peers[0]} and {peers[1]} is not supported yet", path)
    if f.raw("icmps") and f.raw("toPorts"):
        raise ValidationError("icmps and toPorts cannot be used in the same rule; use separate rules", path)


def check_rule(data: Any, path: str, *, clusterwide: bool) -> dict[str, Any]:
    """One policy rule (the value of ``spec`` or an item of ``specs``)."""
    f = Fields(data, path, RULE_FIELDS)
    has_ep, has_node = f.has("endpointSelector"), f.has("nodeSelector")
    if has_node and not clusterwide:
        raise forbidden(f.at("nodeSelector"), "only allowed in CiliumClusterwideNetworkPolicy")
    if has_ep and has_node:
        raise forbidden(f.at("nodeSelector"), "may not be combined with endpointSelector")
    if not has_ep and not has_node:
        what = "endpointSelector or nodeSelector" if clusterwide else "endpointSelector"
        raise missing(f.at("endpointSelector"), f"a rule must select its subjects with {what}")
    key = "endpointSelector" if has_ep else "nodeSelector"
    check_selector(f.raw(key), f.at(key), sources=True)
    for direction in DIRECTIONS:
        for ipath, item in f.each(direction):
            _check_item(item, ipath, direction)
    if not any(f.raw(d) for d in DIRECTIONS):
        raise ValidationError(
            "rule must have at least one of ingress, ingressDeny, egress or egressDeny "
            "(use `ingress: [{}]` for a default-deny rule)",
            path,
        )
    if f.has("enableDefaultDeny"):
        d = Fields(f.raw("enableDefaultDeny"), f.at("enableDefaultDeny"), ("ingress", "egress"))
        d.boolean("ingress")
        d.boolean("egress")
    for lpath, label in f.each("labels"):
        if not isinstance(label, str):
            lf = Fields(label, lpath, ("key", "value", "source"))
            lf.string("key", required=True)
            lf.string("value")
            lf.string("source")
    f.string("description")
    if f.has("log"):
        Fields(f.raw("log"), f.at("log"), ("value",)).string("value")
    return f.data


def check_cilium_policy(obj: dict[str, Any], *, clusterwide: bool) -> None:
    """Validate a CNP/CCNP in place (metadata is checked by the caller)."""
    if obj.get("specs") is not None:
        as_list(obj["specs"], "specs")
    if obj.get("spec") is None and not obj.get("specs"):
        raise missing("spec", "a policy needs `spec` (one rule) or `specs` (a list of rules)")
    if obj.get("spec") is not None:
        check_rule(obj["spec"], "spec", clusterwide=clusterwide)
    for i, rule in enumerate(obj.get("specs") or []):
        check_rule(rule, index("specs", i), clusterwide=clusterwide)
    for key in ("spec", "specs"):
        if obj.get(key) is None:
            obj.pop(key, None)
