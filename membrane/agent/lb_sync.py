"""Services into this node's BPF load-balancer maps (kube-proxy replacement, pod → service path).

Frontends come from the pure control plane (membrane.loadbalancer: Services + EndpointSlices + nodes →
frontends with backends, stable ids); this controller writes the differences: upserts for frontends
whose backends changed, deletes for frontends that are gone, then garbage-collects unused backends.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from membrane.datapath.loader import NodeDatapath
from membrane.datapath.maps.lb import Backend as MapBackend
from membrane.datapath.maps.lb import Frontend as MapFrontend
from membrane.loadbalancer.frontends import Frontend, ServiceIDs
from membrane.loadbalancer.hostport import node_frontends_with_hostports
from membrane.loadbalancer.maglev import lookup_table
from membrane.store.mirror import Mirror
from membrane.store.watch import WatchEvent

log = logging.getLogger(__name__)


def declares_host_port(raw: bytes) -> bool:
    return b'"hostPort"' in raw


class LBSync:
    def __init__(self, node: str, services: Mirror, slices: Mirror, nodes: Mirror, pods: Mirror,
                 datapath: Callable[[], NodeDatapath | None], algorithm: Callable[[], str],
                 maglev_size: Callable[[], int]) -> None:
        self.node = node
        self.services, self.slices, self.nodes, self.pods = services, slices, nodes, pods
        self._datapath = datapath
        self._algorithm = algorithm
        self._maglev_size = maglev_size
        self.ids = ServiceIDs()
        self._applied: dict[tuple[str, int, str], Frontend] = {}

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

    def sync(self) -> None:
        dp = self._datapath()
        if dp is None:
            return
        want = {(f.ip, f.port, f.protocol): f for f in self.frontends()}
        algorithm = self._algorithm()
        for key, fe in want.items():
            if self._applied.get(key) == fe:
                continue
            backends = [MapBackend(b.id, b.ip, b.port, b.protocol, terminating=b.terminating) for b in fe.backends]
            table = None
            if algorithm == "maglev":
                active = {b.id: b.address for b in fe.backends if not b.terminating}
                table = lookup_table(active, size=self._maglev_size()) if active else None
            dp.lb.upsert_service(MapFrontend(fe.ip, fe.port, fe.protocol), backends, rev_nat_index=fe.id,
                                 algorithm=algorithm, affinity_timeout=fe.affinity_timeout, maglev_table=table)
            self._applied[key] = fe
        for key in [k for k in self._applied if k not in want]:
            dp.lb.delete_service(MapFrontend(key[0], key[1], key[2]))
            del self._applied[key]
        dp.lb.gc_backends({b.id for fe in want.values() for b in fe.backends})
