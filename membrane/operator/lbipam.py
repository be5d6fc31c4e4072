"""The operator's LB-IPAM loop: pools and Services in, status of both out (logic: membrane.lbipam).

Dormant until a CiliumLoadBalancerIPPool exists (or a Service still carries LB-IPAM's condition, so
deleting the last pool releases its addresses). Writes are compare-and-swap on the object read; a
Service changed meanwhile is simply handled again on the next round.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from membrane.hubble.metrics import Registry
from membrane.lbipam.allocator import allocate
from membrane.lbipam.pools import mark_conflicts, parse_pool
from membrane.lbipam.status import SERVICE_CONDITION, pool_status, service_status
from membrane.store.errors import StoreError
from membrane.store.etcd import EtcdClient
from membrane.store.mirror import Mirror
from membrane.store.resources import ResourceStore

log = logging.getLogger(__name__)
POOL_GROUP, POOL_KIND = "cilium.io", "CiliumLoadBalancerIPPool"


class LBIPAM:
    def __init__(self, client: EtcdClient, resources: ResourceStore, prefix: str, registry: Registry) -> None:
        self.resources = resources
        self.pools = Mirror(client, f"{prefix}/resources/{POOL_GROUP}/{POOL_KIND}/")
        self.services = Mirror(client, f"{prefix}/resources/core/Service/")
        self.m_available = registry.gauge("cilium_operator_lbipam_ips_available_total",
                                          "Addresses available per LB-IPAM pool", ["pool"])
        self.m_used = registry.gauge("cilium_operator_lbipam_ips_used_total", "Addresses used per LB-IPAM pool",
                                     ["pool"])
        self.m_conflicting = registry.gauge("cilium_operator_lbipam_conflicting_pools_total",
                                            "LB-IPAM pools that overlap an older pool")
        self.m_unsatisfied = registry.gauge("cilium_operator_lbipam_services_unsatisfied_total",
                                            "LoadBalancer Services LB-IPAM could not satisfy")

    @property
    def mirrors(self) -> tuple[Mirror, Mirror]:
        return (self.pools, self.services)

    def reconcile(self) -> bool:
        """One round; False if a write lost a race (the caller runs another round soon)."""
        if not (self.pools.synced and self.services.synced):
            return True
        pool_objs = [self.resources.decode(kv) for kv in self.pools.items()]
        services = [self.resources.decode(kv) for kv in self.services.items()]
        if not pool_objs and not any(_has_condition(s) for s in services):
            return True
        pools = mark_conflicts([parse_pool(p) for p in pool_objs])
        result = allocate(pools, services)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        writes: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for svc in services:
            meta = svc["metadata"]
            res = result.services.get(f"{meta.get('namespace') or 'default'}/{meta['name']}")
            new = service_status(svc, res, now) if res is not None else None
            if new is not None:
                writes.append((svc, new))
                log.info("service %s/%s: LB IPs %s", meta.get("namespace"), meta["name"],
                         ",".join(res.ips) if res and res.ips else "none")
        by_name = {p["metadata"]["name"]: p for p in pool_objs}
        for pool in pools:
            used = result.used.get(pool.name, 0)
            self.m_used.set((pool.name,), used)
            self.m_available.set((pool.name,), max(0, pool.total - used))
            obj = by_name[pool.name]
            new = pool_status(pool, used, obj.get("status"), now)
            if new is not None:
                writes.append((obj, new))
        self.m_conflicting.set((), sum(1 for p in pools if p.conflict))
        self.m_unsatisfied.set((), sum(1 for r in result.services.values()
                                       if r.verdict is not None and r.verdict.status != "True"))
        try:  # compare-and-swap on what was read: a Service changed meanwhile is handled next round
            written = self.resources.update_statuses(writes)
        except StoreError as exc:
            log.info("LB-IPAM: status not written (%s); next round", exc)
            return False
        return all(written)


def _has_condition(svc: dict[str, Any]) -> bool:
    return any(isinstance(c, dict) and c.get("type") == SERVICE_CONDITION
               for c in (svc.get("status") or {}).get("conditions") or [])
