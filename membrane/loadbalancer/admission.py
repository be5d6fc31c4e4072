"""Service admission: ClusterIPs and NodePorts are allocated when a Service is applied, as kube-apiserver does.

``admit(services, ip_owners, port_owners)`` takes the Services of one apply (each with the stored version,
or None), and who holds which value now (what the store's allocation keys say). It fills in what the
Services lack, in place, and returns the plan the store writes in the apply's own transaction:

* an updated Service keeps its clusterIP (immutable: ``field is immutable``) and, by port name, its
  nodePorts, when the manifest leaves them out (what kube-apiserver's update does);
* requested values first (every Service of the apply), then automatic ones, so an automatic value never
  takes what a later document of the same apply asks for; the ports of one number share a nodePort; a
  LoadBalancer with ``externalTrafficPolicy: Local`` also gets a ``healthCheckNodePort`` (reserved only:
  nothing serves health checks yet);
* a conflict refuses the whole apply with the API server's message, e.g.
  ``The Service "b" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated``.

No I/O: the store turns the plan into compares and writes (create-if-absent for each new value).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from membrane.loadbalancer.allocators import (
    DEFAULT_NODE_PORT_RANGE,
    DEFAULT_SERVICE_CIDR,
    KUBERNETES_SERVICE,
    AllocationError,
    NodePortRange,
    RangeFull,
    ServiceIPRange,
)
from membrane.model.errors import ValidationError

CLUSTER_IP, NODE_PORT = "clusterip", "nodeport"


class ServiceInvalid(ValidationError):
    """A Service the API server would refuse; ``str``: its message."""


@dataclass(frozen=True, order=True)
class Allocation:
    kind: str  # clusterip | nodeport
    value: str  # "10.96.0.20" | "30080"
    owner: str  # namespace/name


@dataclass
class AdmissionPlan:
    claims: list[Allocation] = field(default_factory=list)  # new values: nobody may hold them yet
    holds: list[Allocation] = field(default_factory=list)  # the owner's already, and still used
    releases: list[Allocation] = field(default_factory=list)  # the owner's, no longer used

    @property
    def empty(self) -> bool:
        return not (self.claims or self.holds or self.releases)


def owner_of(svc: Mapping[str, Any]) -> str:
    meta = svc.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


def wants_cluster_ip(spec: Mapping[str, Any]) -> bool:
    return (spec.get("type") or "ClusterIP") != "ExternalName" and _requested_ip(spec) != "None"


def wants_node_ports(spec: Mapping[str, Any]) -> bool:
    svc_type = spec.get("type") or "ClusterIP"
    return svc_type == "NodePort" or (svc_type == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is not False)


def wants_health_check_port(spec: Mapping[str, Any]) -> bool:
    return (spec.get("type") or "ClusterIP") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def allocations_of(svc: Mapping[str, Any]) -> list[Allocation]:
    """The values a stored Service holds (what deleting it frees)."""
    spec, owner = svc.get("spec") or {}, owner_of(svc)
    out: set[Allocation] = set()
    if wants_cluster_ip(spec) and _requested_ip(spec):
        out.add(Allocation(CLUSTER_IP, _requested_ip(spec), owner))
    if wants_node_ports(spec):
        out |= {Allocation(NODE_PORT, str(int(p["nodePort"])), owner) for p in spec.get("ports") or [] if p.get("nodePort")}
    if wants_health_check_port(spec) and spec.get("healthCheckNodePort"):
        out.add(Allocation(NODE_PORT, str(int(spec["healthCheckNodePort"])), owner))
    return sorted(out)


def _requested_ip(spec: Mapping[str, Any]) -> str:
    return str(spec.get("clusterIP") or ((spec.get("clusterIPs") or [""])[0]) or "")


def _go_strings(values: Sequence[Any]) -> str:
    """A []string the way the API server prints it: ``[]string{"10.96.0.20"}``."""
    return "[]string{" + ", ".join(json.dumps(str(v)) for v in values) + "}"


def _invalid(svc: Mapping[str, Any], path: str, shown: str, why: str) -> ServiceInvalid:
    name = (svc.get("metadata") or {}).get("name")
    return ServiceInvalid(f'The Service "{name}" is invalid: {path}: Invalid value: {shown}: {why}')


def _internal(svc: Mapping[str, Any], why: str) -> ServiceInvalid:
    """What the API server reports as an internal error (a full range, a taken health-check port)."""
    name = (svc.get("metadata") or {}).get("name")
    return ServiceInvalid(f'Internal error occurred: {why} (Service "{name}")')


def _carry_over(svc: dict[str, Any], old: Mapping[str, Any]) -> None:
    """What an update keeps from the stored Service (kube-apiserver's patchAllocatedValues + immutability)."""
    spec, old_spec = svc.setdefault("spec", {}), old.get("spec") or {}
    old_ip = _requested_ip(old_spec)
    if old_ip and "ExternalName" not in ((spec.get("type") or "ClusterIP"), (old_spec.get("type") or "ClusterIP")):
        new_ip = _requested_ip(spec)
        if not new_ip:
            spec["clusterIP"] = old_ip
            spec["clusterIPs"] = list(old_spec.get("clusterIPs") or [old_ip])
            for key in ("ipFamilies", "ipFamilyPolicy"):
                if key in old_spec and key not in spec:
                    spec[key] = copy.deepcopy(old_spec[key])
        elif new_ip != old_ip:
            raise _invalid(svc, "spec.clusterIP", json.dumps(new_ip), "field is immutable")
    if wants_node_ports(spec) and wants_node_ports(old_spec):
        by_name = {str(p.get("name") or ""): int(p["nodePort"]) for p in old_spec.get("ports") or [] if p.get("nodePort")}
        used = {int(p["nodePort"]) for p in spec.get("ports") or [] if p.get("nodePort")}
        for port in spec.get("ports") or []:
            value = by_name.get(str(port.get("name") or ""))
            if not port.get("nodePort") and value and value not in used:
                port["nodePort"] = value
    keep_health = wants_health_check_port(spec) and wants_health_check_port(old_spec)
    if keep_health and not spec.get("healthCheckNodePort") and old_spec.get("healthCheckNodePort"):
        spec["healthCheckNodePort"] = old_spec["healthCheckNodePort"]


def _claim_requested(svc: dict[str, Any], ips: ServiceIPRange, ports: NodePortRange) -> None:
    spec, owner = svc["spec"], owner_of(svc)
    requested = _requested_ip(spec)
    if wants_cluster_ip(spec) and requested:
        try:
            ips.claim(requested, owner)
        except AllocationError as exc:
            raise _invalid(svc, "spec.clusterIPs", _go_strings(spec.get("clusterIPs") or [requested]),
                           f"failed to allocate IP {requested}: {exc}") from None
        spec["clusterIP"] = requested  # asked for with clusterIPs only: both fields name it, as stored by the API
        spec.setdefault("clusterIPs", [requested])
    if wants_node_ports(spec):
        for i, port in enumerate(spec.get("ports") or []):
            if port.get("nodePort"):
                try:
                    ports.claim(int(port["nodePort"]), owner)
                except AllocationError as exc:
                    raise _invalid(svc, f"spec.ports[{i}].nodePort", str(int(port["nodePort"])), str(exc)) from None
    health = spec.get("healthCheckNodePort")
    if wants_health_check_port(spec) and health:
        try:
            ports.claim(int(health), owner)
        except AllocationError as exc:
            raise _internal(svc, f"failed to allocate requested HealthCheck NodePort {int(health)}: {exc}") from None


def _allocate_missing(svc: dict[str, Any], ips: ServiceIPRange, ports: NodePortRange) -> None:
    spec, owner = svc["spec"], owner_of(svc)
    if wants_cluster_ip(spec):
        if not _requested_ip(spec):
            try:
                ip = (ips.claim(ips.kubernetes_ip, owner) if owner == KUBERNETES_SERVICE
                      else ips.allocate_next(owner))
            except RangeFull as exc:
                raise _internal(svc, f"failed to allocate a serviceIP: {exc}") from None
            spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
    if wants_node_ports(spec):
        # kube-apiserver gives the ports of one number (TCP and UDP of 53, say) one nodePort.
        by_number = {int(p["port"]): int(p["nodePort"]) for p in spec.get("ports") or [] if p.get("nodePort")}
        for port in spec.get("ports") or []:
            if port.get("nodePort"):
                continue
            number = int(port["port"])
            if number not in by_number:
                try:
                    by_number[number] = ports.allocate_next(owner)
                except RangeFull as exc:
                    raise _internal(svc, f"failed to allocate a nodePort: {exc}") from None
            port["nodePort"] = by_number[number]
    if wants_health_check_port(spec) and not spec.get("healthCheckNodePort"):
        try:
            spec["healthCheckNodePort"] = ports.allocate_next(owner)
        except RangeFull as exc:
            raise _internal(svc, f"failed to allocate a HealthCheck NodePort: {exc}") from None


def admit(services: Sequence[tuple[dict[str, Any], Mapping[str, Any] | None]],
          ip_owners: Mapping[str, str], port_owners: Mapping[int, str], *,
          cidr: str = DEFAULT_SERVICE_CIDR,
          port_range: tuple[int, int] = DEFAULT_NODE_PORT_RANGE) -> AdmissionPlan:
    """Allocate for the Services of one apply (each ``(new, stored or None)``), filling ``new`` in place.

    ``ip_owners``/``port_owners``: every value held now and its owner. Raises ServiceInvalid (nothing
    may then be stored); otherwise returns what to write.
    """
    ips, ports = ServiceIPRange(cidr, ip_owners), NodePortRange(port_range, port_owners)
    applied = [owner_of(svc) for svc, _old in services]
    for owner in applied:  # what the applied Services hold now is theirs to keep or give up
        for ip in ips.owned_by(owner):
            if ip != ips.kubernetes_ip:
                ips.release(ip, owner)
        for port in ports.owned_by(owner):
            ports.release(port, owner)
    for svc, old in services:
        svc.setdefault("spec", {})
        if old is not None:
            _carry_over(svc, old)
    for svc, _old in services:
        _claim_requested(svc, ips, ports)
    for svc, _old in services:
        _allocate_missing(svc, ips, ports)
    held = {Allocation(CLUSTER_IP, ip, o) for ip, o in ip_owners.items() if o in applied}
    held |= {Allocation(NODE_PORT, str(p), o) for p, o in port_owners.items() if o in applied}
    wanted = {a for svc, _old in services for a in allocations_of(svc)}
    return AdmissionPlan(claims=sorted(wanted - held), holds=sorted(wanted & held), releases=sorted(held - wanted))
