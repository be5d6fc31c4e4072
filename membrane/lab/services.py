"""The lab's Service controller: EndpointSlices and Endpoints upkeep (called from the kubelet loop).

ClusterIPs and NodePorts are not allocated here: the store allocates them when a Service is applied
(``membrane.store.service_alloc``), so every stored Service already holds its addresses.
"""

from __future__ import annotations

import logging
from typing import Any

from membrane.loadbalancer.endpointslices import (
    ENDPOINTS_MANAGED_BY_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    endpoint_slices,
    legacy_endpoints,
)
from membrane.store.resources import ResourceStore

log = logging.getLogger(__name__)

BATCH = 100  # objects per etcd transaction (etcd's default limit is 128 operations)
SLICE_GROUP, SLICE_KIND = "discovery.k8s.io", "EndpointSlice"
_COMPARED = ("addressType", "endpoints", "ports", "subsets")


class ServiceController:
    def __init__(self, store: ResourceStore) -> None:
        self.store = store

    # -- endpoints ---------------------------------------------------------------------------

    def sync(self, services: list[dict[str, Any]], pods: list[dict[str, Any]]) -> None:
        self.sync_endpoints(services, pods)

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
