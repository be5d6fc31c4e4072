"""Which Services a node is a candidate to announce, on which devices, with which addresses.

A CiliumL2AnnouncementPolicy selects nodes (``nodeSelector``), Services (``serviceSelector``, with the
special keys ``io.kubernetes.service.namespace``/``.name``) and devices (``interfaces``: regular
expressions, ORed; none = every device); ``loadBalancerIPs`` announces ``status.loadBalancer.ingress``
and ``externalIPs`` the Service's ``spec.externalIPs``. Only Services without a ``loadBalancerClass`` or
with ``io.cilium/l2-announcer`` are announced; IPv4 only (ARP). Policies add up: a Service two
policies select is announced with the union of their addresses and devices. A node is a candidate for a
Service only if at least one of its devices matches. One lease per Service decides who announces:
``cilium-l2announce-<namespace>-<name>``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from membrane.model.labels import LabelSelector
from membrane.model.service import service_selector_labels

L2_CLASS = "io.cilium/l2-announcer"
LEASE_PREFIX = "cilium-l2announce-"


@dataclass(frozen=True)
class L2Policy:
    name: str
    node_selector: LabelSelector | None
    service_selector: LabelSelector | None
    interfaces: tuple[re.Pattern[str], ...]
    load_balancer_ips: bool
    external_ips: bool

    def devices(self, devices: Sequence[str]) -> list[str]:
        if not self.interfaces:
            return list(devices)
        return [d for d in devices if any(p.search(d) for p in self.interfaces)]


@dataclass(frozen=True)
class Announcement:
    service: str  # namespace/name
    ips: tuple[str, ...]
    devices: tuple[str, ...]

    @property
    def lease_name(self) -> str:
        return lease_name(self.service)


def lease_name(service: str) -> str:
    ns, name = service.split("/", 1)
    return f"{LEASE_PREFIX}{ns}-{name}"


def parse_policy(obj: dict[str, Any]) -> L2Policy:
    """A validated policy object (membrane.model.l2policy) as an L2Policy."""
    spec = obj.get("spec") or {}
    node_sel, svc_sel = spec.get("nodeSelector"), spec.get("serviceSelector")
    return L2Policy(
        name=str(obj["metadata"]["name"]),
        node_selector=LabelSelector.from_dict(node_sel, "spec.nodeSelector") if node_sel is not None else None,
        service_selector=LabelSelector.from_dict(svc_sel, "spec.serviceSelector") if svc_sel is not None else None,
        interfaces=tuple(re.compile(p) for p in spec.get("interfaces") or ()),
        load_balancer_ips=spec.get("loadBalancerIPs") is True,
        external_ips=spec.get("externalIPs") is True,
    )


def _ipv4(values: list[str]) -> list[str]:
    out = []
    for value in values:
        try:
            if ipaddress.ip_address(value).version == 4:
                out.append(str(ipaddress.ip_address(value)))
        except ValueError:
            continue
    return out


def service_ips(svc: dict[str, Any], policy: L2Policy) -> list[str]:
    spec, status = svc.get("spec") or {}, svc.get("status") or {}
    ips: list[str] = []
    if policy.load_balancer_ips:
        ips += _ipv4([str(i.get("ip")) for i in (status.get("loadBalancer") or {}).get("ingress") or []
                      if isinstance(i, dict) and i.get("ip")])
    if policy.external_ips:
        ips += _ipv4([str(i) for i in spec.get("externalIPs") or []])
    return ips


def announcements(policies: Sequence[L2Policy], services: Sequence[dict[str, Any]], node_labels: dict[str, str],
                  devices: Sequence[str]) -> dict[str, Announcement]:
    """The Services this node is a candidate for, keyed ``namespace/name``."""
    found: dict[str, tuple[list[str], list[str]]] = {}
    mine = [p for p in policies if p.node_selector is None or p.node_selector.matches(node_labels)]
    for svc in services:
        spec = svc.get("spec") or {}
        if spec.get("loadBalancerClass") not in (None, "", L2_CLASS):
            continue
        labels = service_selector_labels(svc)
        meta = svc.get("metadata") or {}
        key = f"{meta.get('namespace') or 'default'}/{meta.get('name')}"
        for policy in mine:
            if policy.service_selector is not None and not policy.service_selector.matches(labels):
                continue
            ips, devs = service_ips(svc, policy), policy.devices(devices)
            if not ips or not devs:
                continue
            have_ips, have_devs = found.setdefault(key, ([], []))
            have_ips += [i for i in ips if i not in have_ips]
            have_devs += [d for d in devs if d not in have_devs]
    return {k: Announcement(k, tuple(ips), tuple(devs)) for k, (ips, devs) in sorted(found.items())}
