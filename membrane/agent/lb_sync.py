"""Services into this node's BPF load-balancer maps (kube-proxy replacement, pod → service path).

Frontends come from the pure control plane (membrane.loadbalancer: Services + EndpointSlices + nodes →
frontends with backends, stable ids); this controller turns them into a desired table, one immutable
``ServiceEntry`` per map frontend (backends, rev-NAT id, algorithm, maglev table), and a reconciler
writes the changed rows through ``LBOps``: an upsert per frontend whose row changed, a delete per
frontend gone, backends released once no row lists them, and a periodic full prune of what the maps
hold beyond the table.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from membrane.datapath.maps.lb import Backend as MapBackend
from membrane.datapath.maps.lb import Frontend as MapFrontend
from membrane.datapath.maps.ops import LBOps, LBTarget, ServiceEntry
from membrane.loadbalancer.frontends import Frontend, ServiceIDs
from membrane.loadbalancer.hostport import node_frontends_with_hostports
from membrane.loadbalancer.maglev import lookup_table
from membrane.state.reconciler import Reconciler
from membrane.state.table import Table
from membrane.store.mirror import Mirror
from membrane.store.watch import WatchEvent

log = logging.getLogger(__name__)

PRUNE_SECONDS = 300.0


def declares_host_port(raw: bytes) -> bool:
    return b'"hostPort"' in raw


class LBSync:
    def __init__(self, node: str, services: Mirror, slices: Mirror, nodes: Mirror, pods: Mirror,
                 target: Callable[[], LBTarget | None], algorithm: Callable[[], str],
                 maglev_size: Callable[[], int], *, clock: Callable[[], float] | None = None) -> None:
        self.node = node
        self.services, self.slices, self.nodes, self.pods = services, slices, nodes, pods
        self._algorithm = algorithm
        self._maglev_size = maglev_size
        self.ids = ServiceIDs()
        self.table: Table[MapFrontend, ServiceEntry] = Table("lb-services", initialized=False)
        self.table.add_index("backend", lambda _k, row: row.backend_ids)
        ops = LBOps(target, self.table.items, backend_in_use=lambda b: bool(self.table.by_index("backend", b)))
        extra = {} if clock is None else {"clock": clock}
        self.reconciler: Reconciler[MapFrontend, ServiceEntry] = Reconciler(
            self.table, ops, name="bpf-lb", prune_interval=PRUNE_SECONDS, **extra)

    def frontends(self) -> list[Frontend]:
        def objs(m: Mirror) -> list[dict]:
            return [json.loads(kv.value) for kv in m.items()]

        # Only pods that declare a hostPort make frontends: skip decoding the rest.
        pods = [json.loads(kv.value) for kv in self.pods.items() if declares_host_port(kv.value)]
        return node_frontends_with_hostports(objs(self.services), objs(self.slices), pods, objs(self.nodes),
                                             self.ids, node=self.node)

    @staticmethod
    def pods_changed_matter(events: list[WatchEvent]) -> bool:
        """A pod change matters to the LB maps only if the pod (before or after) declares a hostPort."""
        return any(declares_host_port(e.kv.value) or (e.prev_kv is not None and declares_host_port(e.prev_kv.value))
                   for e in events)

    def rows(self) -> dict[MapFrontend, ServiceEntry]:
        algorithm = self._algorithm()
        rows = {}
        for fe in self.frontends():
            backends = tuple(MapBackend(b.id, b.ip, b.port, b.protocol, terminating=b.terminating) for b in fe.backends)
            table: tuple[int, ...] = ()
            if algorithm == "maglev":
                active = {b.id: b.address for b in fe.backends if not b.terminating}
                table = tuple(lookup_table(active, size=self._maglev_size())) if active else ()
            key = MapFrontend(fe.ip, fe.port, fe.protocol)
            rows[key] = ServiceEntry(key, backends, fe.id, algorithm, fe.affinity_timeout, table)
        return rows

    def sync(self) -> None:
        """Refresh the desired table (only changed frontends get a new revision) and apply what is due."""
        self.table.replace_all(self.rows())
        self.table.mark_initialized()
        self.reconciler.run_once()
