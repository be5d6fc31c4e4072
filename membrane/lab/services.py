"""The lab's Service controller: ClusterIP/NodePort allocation and EndpointSlices/Endpoints upkeep.

``sync(services, pods)`` (called from the kubelet loop) does, in order:

1. load the allocators from etcd (``/membrane/<cluster>/ipam/services``), release what deleted Services
   held, claim what Services already carry (oldest Service first: a conflicting later one is refused,
   its error kept in ``errors``), allocate ClusterIPs and NodePorts for Services that lack them;
2. persist the allocators (compare-and-swap on the key) BEFORE writing the values into the Services, so
   a crash never hands one value to two Services; then write each changed Service with compare-and-swap
   (a Service changed meanwhile is simply redone next round: the allocator gives it the same values);
3. make the EndpointSlices (managed-by membrane) and v1 Endpoints match the Services' pods.
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

from membrane.loadbalancer.allocators import AllocationError, ClusterIPAllocator, NodePortAllocator
from membrane.loadbalancer.endpointslices import (
    ENDPOINTS_MANAGED_BY_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    endpoint_slices,
    legacy_endpoints,
)
from membrane.store.errors import StoreError
from membrane.store.resources import ResourceStore
from membrane.store.txn import Op, mod_revision_eq

log = logging.getLogger(__name__)

BATCH = 100  # objects per etcd transaction (etcd's default limit is 128 operations)
SLICE_GROUP, SLICE_KIND = "discovery.k8s.io", "EndpointSlice"
_COMPARED = ("addressType", "endpoints", "ports", "subsets")


def owner_of(obj: dict[str, Any]) -> str:
    return f"{obj['metadata'].get('namespace', 'default')}/{obj['metadata']['name']}"


def _wants_node_ports(spec: dict[str, Any]) -> bool:
    svc_type = spec.get("type") or "ClusterIP"
    return svc_type == "NodePort" or (svc_type == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is not False)


def _wants_cluster_ip(spec: dict[str, Any]) -> bool:
    return (spec.get("type") or "ClusterIP") != "ExternalName" and spec.get("clusterIP") != "None"


def _age_order(svc: dict[str, Any]) -> tuple[str, str]:
    return (str(svc["metadata"].get("creationTimestamp") or ""), owner_of(svc))


class ServiceController:
    def __init__(self, store: ResourceStore, service_cidr: str = "10.96.0.0/16",
                 node_port_range: tuple[int, int] = (30000, 32767)) -> None:
        self.store = store
        self.service_cidr = service_cidr
        self.node_port_range = node_port_range
        self.state_key = store.layout.ipam_key("services")
        self.errors: dict[str, str] = {}  # namespace/name -> why its ClusterIP/NodePort was refused

    # -- allocation --------------------------------------------------------------------------

    def _load(self) -> tuple[ClusterIPAllocator, NodePortAllocator, int, str]:
        kv = self.store.client.get(self.state_key)
        data = json.loads(kv.value) if kv else {}
        ips = (ClusterIPAllocator.restore(data["clusterIPs"]) if data.get("clusterIPs")
               else ClusterIPAllocator(self.service_cidr))
        ports = (NodePortAllocator.restore(data["nodePorts"]) if data.get("nodePorts")
                 else NodePortAllocator(self.node_port_range))
        return ips, ports, kv.mod_revision if kv else 0, kv.value.decode() if kv else ""

    def allocate(self, services: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Claim/allocate for every Service, persist the allocators; returns the Services to rewrite."""
        ips, ports, revision, before = self._load()
        live = {owner_of(s) for s in services}
        for owner in set(ips.allocated().values()) - live:
            ips.release(owner)
        for owner in set(ports.allocated().values()) - live:
            ports.release(owner)
        self.errors = {}
        ordered = sorted(services, key=_age_order)
        changed: dict[str, dict[str, Any]] = {}
        for dynamic in (False, True):  # first honour what Services carry, then fill the gaps
            for svc in ordered:
                owner = owner_of(svc)
                if owner in self.errors:
                    continue
                new = changed.get(owner) or copy.deepcopy(svc)
                try:
                    if self._assign(new, ips, ports, dynamic) and new != svc:
                        changed[owner] = new
                except AllocationError as exc:
                    self.errors[owner] = str(exc)
                    changed.pop(owner, None)
                    log.warning("service %s: %s", owner, exc)
        after = json.dumps({"clusterIPs": ips.snapshot(), "nodePorts": ports.snapshot()}, sort_keys=True)
        if after != before:
            result = self.store.client.txn([mod_revision_eq(self.state_key, revision)], [Op.put(self.state_key, after)])
            if not result.succeeded:
                log.info("service allocator state changed concurrently; retrying next round")
                return []
        return list(changed.values())

    def _assign(self, svc: dict[str, Any], ips: ClusterIPAllocator, ports: NodePortAllocator, dynamic: bool) -> bool:
        """Claim (``dynamic`` False) or allocate (True) the Service's values in place; True if it has them all."""
        spec = svc.setdefault("spec", {})
        owner = owner_of(svc)
        if _wants_cluster_ip(spec):
            requested = spec.get("clusterIP") or ((spec.get("clusterIPs") or [""])[0])
            if requested or dynamic:
                ip = ips.allocate(owner, requested or None)
                ips.release(owner, keep=(ip,))
                spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
                spec.setdefault("ipFamilies", ["IPv4"])
                spec.setdefault("ipFamilyPolicy", "SingleStack")
        else:
            ips.release(owner)
        kept: list[int] = []
        if _wants_node_ports(spec):
            by_number: dict[int, int] = {}
            for port in spec.get("ports") or []:
                if port.get("nodePort"):
                    kept.append(ports.allocate(owner, int(port["nodePort"])))
            if dynamic:
                for port in spec.get("ports") or []:
                    if not port.get("nodePort"):
                        # Kubernetes gives the TCP and UDP ports of one number one nodePort.
                        number = int(port["port"])
                        port["nodePort"] = by_number.get(number) or ports.allocate(owner)
                        by_number[number] = port["nodePort"]
                        kept.append(port["nodePort"])
        ports.release(owner, keep=tuple(kept))
        return dynamic

    # -- endpoints ---------------------------------------------------------------------------

    def sync(self, services: list[dict[str, Any]], pods: list[dict[str, Any]]) -> None:
        try:
            rewritten = self.allocate(services)
        except StoreError as exc:
            log.warning("service allocation skipped: %s", exc)
            rewritten = []
        current = {owner_of(s): s for s in services}
        for svc in rewritten:
            try:
                current[owner_of(svc)] = self.store.put_object(
                    svc, expected_revision=int(svc["metadata"].get("resourceVersion") or 0))
            except StoreError as exc:
                log.info("service %s not updated (retrying next round): %s", owner_of(svc), exc)
        self.sync_endpoints(list(current.values()), pods)

    def sync_endpoints(self, services: list[dict[str, Any]], pods: list[dict[str, Any]]) -> None:
        """Create, update and delete EndpointSlices and Endpoints to match ``services`` and ``pods``."""
        want_slices = [s for svc in services for s in endpoint_slices(svc, pods)]
        want_eps = [e for svc in services if (e := legacy_endpoints(svc, pods)) is not None]
        have_slices = [s for s in self.store.list(SLICE_GROUP, SLICE_KIND)[0]
                       if (s["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY]
        have_eps = [e for e in self.store.list("core", "Endpoints")[0]
                    if (e["metadata"].get("labels") or {}).get(ENDPOINTS_MANAGED_BY_LABEL) == MANAGED_BY]
        self._converge(SLICE_GROUP, SLICE_KIND, want_slices, have_slices)
        self._converge("core", "Endpoints", want_eps, have_eps)

    def _converge(self, group: str, kind: str, want: list[dict[str, Any]], have: list[dict[str, Any]]) -> None:
        def key(o: dict[str, Any]) -> tuple[str, str]:
            return (o["metadata"]["namespace"], o["metadata"]["name"])

        existing = {key(o): o for o in have}
        wanted = {key(o) for o in want}
        writes = [o for o in want if key(o) not in existing or _differs(o, existing[key(o)])]
        gone = [(group, kind, ns, name) for (ns, name) in existing if (ns, name) not in wanted]
        for i in range(0, len(writes), BATCH):
            self.store.apply_many(writes[i:i + BATCH])
        for i in range(0, len(gone), BATCH):
            self.store.delete_many(gone[i:i + BATCH])


def _differs(want: dict[str, Any], have: dict[str, Any]) -> bool:
    if any(want.get(k) != have.get(k) for k in _COMPARED):
        return True
    wm, hm = want["metadata"], have["metadata"]
    return wm.get("labels") != hm.get("labels") or wm.get("ownerReferences") != hm.get("ownerReferences")
