"""Encapsulation between nodes, Calico-style: ``Always``, ``CrossSubnet`` or ``Never``, by ``vxlan`` or ``ipip``.

Three ways to say it, in this order of precedence:

* ``routingMode=tunnel`` (Cilium): VXLAN to every other node, always;
* a Calico ``IPPool`` (``crd.projectcalico.org/v1``) covering the cluster pool, with ``vxlanMode`` or
  ``ipipMode`` (membrane.model.calico_ippool);
* Helm ``encapsulation.mode`` / ``encapsulation.type`` (``Never`` by default: native routing).

``encapsulate_toward`` is the per-destination decision the agent writes into each tunnel map entry;
``tunnel_plan`` is that decision for every other node. Pure: no datapath, no store.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

ENCAP_MODES = ("Always", "CrossSubnet", "Never")
ENCAP_TYPES = ("vxlan", "ipip")
# Bytes a pod's MTU loses: VXLAN = outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14; IPIP = outer IPv4 20.
OVERHEAD = {"vxlan": 50, "ipip": 20}


@dataclass(frozen=True)
class Encapsulation:
    mode: str = "Never"  # ENCAP_MODES
    type: str = "vxlan"  # ENCAP_TYPES
    source: str = "helm"  # helm | routingMode | IPPool/<name>: where the decision came from

    @property
    def enabled(self) -> bool:
        return self.mode != "Never"

    @property
    def overhead(self) -> int:
        """What the pod MTU loses (0 in Never mode)."""
        return OVERHEAD[self.type] if self.enabled else 0

    def describe(self) -> str:
        """The status line's bracket: ``vxlan``, ``ipip, CrossSubnet`` …"""
        return self.type if self.mode == "Always" else f"{self.type}, {self.mode}"


@dataclass(frozen=True)
class TunnelEntry:
    """One tunnel map row: the owning node's address and how to reach it."""

    node_ip: str
    type: str  # vxlan | ipip


def encapsulate_toward(mode: str, local_subnet: str, peer_ip: str) -> bool:
    """Whether a packet to a pod on the node at ``peer_ip`` is encapsulated.

    CrossSubnet encapsulates only toward nodes outside ``local_subnet`` (this node's underlay
    network); an unknown local subnet counts as "different", so traffic is never sent plain to a
    node that might be behind a router knowing no pod routes.
    """
    if mode == "Always":
        return True
    if mode == "Never":
        return False
    if mode != "CrossSubnet":
        raise ValueError(f"encapsulation mode {mode!r} is not one of {', '.join(ENCAP_MODES)}")
    if not local_subnet:
        return True
    return ipaddress.IPv4Address(peer_ip) not in ipaddress.IPv4Network(local_subnet, strict=False)


def tunnel_plan(self_name: str, nodes: Iterable[Any], enc: Encapsulation) -> dict[str, TunnelEntry]:
    """Pod CIDR -> tunnel entry for every other node that ``enc`` encapsulates toward.

    ``nodes`` are membrane.endpoint.routing.NodeInfo-like (name, internal_ip, pod_cidrs,
    underlay_cidr). Nodes left out are reached natively (routes of membrane.endpoint.routing).
    """
    nodes = list(nodes)
    if not enc.enabled:
        return {}
    me = next((n for n in nodes if n.name == self_name), None)
    local_subnet = me.underlay_cidr if me is not None else ""
    out: dict[str, TunnelEntry] = {}
    for node in nodes:
        if node.name == self_name or not node.internal_ip:
            continue
        if not encapsulate_toward(enc.mode, local_subnet, node.internal_ip):
            continue
        for cidr in node.pod_cidrs:
            out[str(ipaddress.IPv4Network(cidr, strict=False))] = TunnelEntry(node.internal_ip, enc.type)
    return out


def pool_encapsulation(pool: dict[str, Any]) -> Encapsulation:
    """The encapsulation a validated Calico IPPool asks for (vxlanMode wins over ipipMode only in
    that both cannot be on: validation refuses it)."""
    spec = pool.get("spec") or {}
    name = f"IPPool/{(pool.get('metadata') or {}).get('name', '')}"
    vxlan, ipip = spec.get("vxlanMode") or "Never", spec.get("ipipMode") or "Never"
    if vxlan != "Never":
        return Encapsulation(vxlan, "vxlan", name)
    if ipip != "Never":
        return Encapsulation(ipip, "ipip", name)
    return Encapsulation("Never", "vxlan", name)


def effective_encapsulation(routing_mode: str, tunnel_protocol: str, helm_mode: str, helm_type: str,
                            cluster_cidrs: Iterable[str], pools: Iterable[dict[str, Any]]) -> Encapsulation:
    """What this cluster does, from the settings and the Calico IPPools in the store.

    routingMode=tunnel wins (Cilium's tunnel is always on); otherwise the first enabled IPPool (by
    name) whose cidr overlaps the cluster pool; otherwise the Helm values.
    """
    if routing_mode == "tunnel":
        return Encapsulation("Always", tunnel_protocol, "routingMode")
    nets = [ipaddress.IPv4Network(c, strict=False) for c in cluster_cidrs]
    for pool in sorted(pools, key=lambda p: (p.get("metadata") or {}).get("name", "")):
        spec = pool.get("spec") or {}
        if spec.get("disabled"):
            continue
        try:
            cidr = ipaddress.IPv4Network(spec.get("cidr", ""), strict=False)
        except ValueError:
            continue
        if any(cidr.overlaps(n) for n in nets):
            return pool_encapsulation(pool)
    return Encapsulation(helm_mode, helm_type, "helm")


def fit_headroom(wanted: Encapsulation, fallback: Encapsulation, headroom: int | None) -> tuple[Encapsulation, str]:
    """``wanted`` if its overhead fits the MTU headroom the pods got (None: not started yet, anything
    fits), else ``fallback`` and why: packets of the bigger encapsulation would not fit the underlay."""
    if headroom is None or wanted.overhead <= headroom:
        return wanted, ""
    return fallback, (f"{wanted.source} ({wanted.type} {wanted.mode}) not followed: it needs {wanted.overhead} "
                      f"bytes of MTU headroom, pods were created with {headroom}; recreate the lab with the mode")


def pod_mtu_headroom(encap: Encapsulation, egress_gateway: bool) -> int:
    """Bytes the pods' MTU leaves below the underlay's: the encapsulation's overhead and, with the egress
    gateway enabled, at least VXLAN's, in native routing too, because a selected pod's packets reach the
    gateway node through the VXLAN device (a full-size packet would fragment on the outer header). Like
    Cilium, every pod gets it, selected or not: a policy can select a running pod, whose MTU and TCP MSS
    are already fixed."""
    return max(encap.overhead, OVERHEAD["vxlan"] if egress_gateway else 0)
