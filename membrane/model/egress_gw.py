"""CiliumEgressGatewayPolicy (``cilium.io/v2``, cluster-scoped): validation and the parsed form.

- ``spec.selectors[]`` (required, ORed): ``podSelector`` and/or ``namespaceSelector``, optionally
  ``nodeSelector`` (restricts the source pods to nodes; it must accompany one of the other two);
- ``spec.destinationCIDRs`` (required): IPv4 CIDRs whose traffic is redirected; overlaps between
  entries are refused so the list means exactly what it says;
- ``spec.excludedCIDRs``: IPv4 CIDRs subtracted from them; each must lie inside a destination CIDR;
- ``spec.egressGateway``: ``nodeSelector`` (required) plus ``egressIP`` or ``interface``; naming
  both is refused here (Cilium ignores such a policy silently); neither means the first address of
  the gateway's default-route device;
- ``spec.egressGateways[]`` (at most 64): several gateways, each source endpoint pinned to one by a
  hash of its UID; when present it overrides ``egressGateway``, as in Cilium.

Only IPv4 is served (the datapath is IPv4-only): IPv6 CIDRs and addresses are refused with that reason.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from membrane.model.fields import Fields, forbidden, index, invalid, ipv4_cidr_list_item, missing
from membrane.model.labels import LabelSelector

SPEC_FIELDS = ("selectors", "destinationCIDRs", "excludedCIDRs", "egressGateway", "egressGateways")
SELECTOR_FIELDS = ("podSelector", "namespaceSelector", "nodeSelector")
GATEWAY_FIELDS = ("nodeSelector", "interface", "egressIP")
MAX_GATEWAYS = 64


@dataclass(frozen=True)
class SourceSelector:
    """One entry of ``spec.selectors``: pods (labels incl. ``io.kubernetes.pod.namespace``), their
    namespace's labels, their node's labels; None = not constrained."""

    pod: LabelSelector | None
    namespace: LabelSelector | None
    node: LabelSelector | None


@dataclass(frozen=True)
class GatewayConfig:
    node_selector: LabelSelector
    interface: str = ""
    egress_ip: str = ""


@dataclass(frozen=True)
class EgressPolicy:
    name: str
    selectors: tuple[SourceSelector, ...]
    destinations: tuple[ipaddress.IPv4Network, ...]
    excluded: tuple[ipaddress.IPv4Network, ...]
    gateways: tuple[GatewayConfig, ...]  # one (egressGateway) or several (egressGateways)


def _cidrs(f: Fields, key: str, *, required: bool) -> list[ipaddress.IPv4Network]:
    out: list[ipaddress.IPv4Network] = []
    for where, raw in f.each(key, required=required, non_empty=required):
        net = ipv4_cidr_list_item(where, raw, out, f.at(key),
                                  "IPv6 is not enabled; egress gateway policies take IPv4 CIDRs only")
        out.append(net)
    return out


def _gateway(data: Any, path: str) -> GatewayConfig:
    g = Fields(data, path, GATEWAY_FIELDS)
    if not g.has("nodeSelector"):
        raise missing(g.at("nodeSelector"), "a gateway needs a nodeSelector choosing its node")
    node = LabelSelector.from_dict(g.raw("nodeSelector"), g.at("nodeSelector"))
    interface = g.string("interface") or ""
    egress_ip = (g.string("egressIP") or "").strip()
    if interface and egress_ip:
        raise forbidden(path, "egressIP and interface are mutually exclusive: name the address or the device, not both")
    if egress_ip:
        try:
            addr = ipaddress.ip_address(egress_ip)
        except ValueError:
            raise invalid(g.at("egressIP"), egress_ip, "must be a valid IP address, (e.g. 10.9.8.7)") from None
        if addr.version != 4:
            raise invalid(g.at("egressIP"), egress_ip, "IPv6 is not enabled; the egress IP must be IPv4")
    return GatewayConfig(node, interface, egress_ip)


def _source(data: Any, path: str) -> SourceSelector:
    s = Fields(data, path, SELECTOR_FIELDS)
    parsed: dict[str, LabelSelector | None] = {}
    for key in SELECTOR_FIELDS:
        parsed[key] = LabelSelector.from_dict(s.raw(key), s.at(key), sources=True) if s.has(key) else None
    if parsed["podSelector"] is None and parsed["namespaceSelector"] is None:
        raise missing(s.at("podSelector"), "a selector needs podSelector or namespaceSelector "
                      "(nodeSelector only narrows the pods they choose)")
    return SourceSelector(parsed["podSelector"], parsed["namespaceSelector"], parsed["nodeSelector"])


def parse_egress_policy(obj: dict[str, Any]) -> EgressPolicy:
    """The policy's parsed form; raises ValidationError naming the field for anything wrong."""
    if obj.get("spec") is None:
        raise missing("spec", "a CiliumEgressGatewayPolicy needs spec.selectors and spec.destinationCIDRs")
    f = Fields(obj["spec"], "spec", SPEC_FIELDS)
    selectors = tuple(_source(item, where) for where, item in f.each("selectors", required=True, non_empty=True))
    destinations = _cidrs(f, "destinationCIDRs", required=True)
    excluded = _cidrs(f, "excludedCIDRs", required=False)
    for i, net in enumerate(excluded):
        if not any(net.subnet_of(d) for d in destinations):
            raise invalid(index(f.at("excludedCIDRs"), i), str(net), "is not inside any of spec.destinationCIDRs")
    many = [_gateway(item, where) for where, item in f.each("egressGateways", max_items=MAX_GATEWAYS)]
    one = _gateway(f.raw("egressGateway"), f.at("egressGateway")) if f.has("egressGateway") else None
    if many:
        gateways = tuple(many)
    elif one is not None:
        gateways = (one,)
    else:
        raise missing(f.at("egressGateway"), "a policy needs egressGateway or egressGateways")
    name = str((obj.get("metadata") or {}).get("name", ""))
    return EgressPolicy(name, selectors, tuple(destinations), tuple(excluded), gateways)


def check_egress_policy(obj: dict[str, Any]) -> None:
    """Validate a CiliumEgressGatewayPolicy (metadata is checked by the caller)."""
    parse_egress_policy(obj)
