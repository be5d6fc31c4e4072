"""The operator: gives every node a pod CIDR from the cluster pool (ipam.mode=cluster-pool).

Allocations are recorded in etcd (``/membrane/<cluster>/ipam/cluster-pool``) and on the Node object
(``spec.podCIDR``/``podCIDRs``); an existing allocation never changes, and appending a CIDR to
``clusterPoolIPv4PodCIDRList`` extends the pool. Errors (exhausted pool, overlap with the node
network) are written to the node's status, like CiliumNode's ``status.ipam.operator-status``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from membrane.api.operator_config import OperatorConfig
from membrane.hubble.metrics import Registry
from membrane.identity.allocator import IdentityAllocator
from membrane.identity.gc import identity_gc
from membrane.ipam.cluster_pool import PoolExhausted, allocate_node_cidrs
from membrane.ipam.overlap import check_no_overlap
from membrane.ipcache.ownership import identities_in_use, orphaned_by_node
from membrane.metricsserver.server import MetricsServer
from membrane.model.config import ClusterConfig
from membrane.model.errors import ValidationError
from membrane.model.node_conditions import agent_conditions, is_up
from membrane.operator.lbipam import LBIPAM
from membrane.store.errors import StoreError
from membrane.store.etcd import EtcdClient
from membrane.store.mirror import Mirror
from membrane.store.resources import ResourceStore
from membrane.store.txn import StoreTxnOps

log = logging.getLogger(__name__)

GC_INTERVAL = 15.0  # seconds between identity garbage collections


class Operator:
    def __init__(self, cfg: OperatorConfig) -> None:
        self.cfg = cfg
        cluster = cfg.cluster
        self.client = EtcdClient(cfg.etcd_endpoint)
        self.resources = ResourceStore(self.client, cluster)
        self.prefix = f"/membrane/{cluster}"
        self.alloc_key = f"{self.prefix}/ipam/cluster-pool"
        self.nodes = Mirror(self.client, f"{self.prefix}/resources/core/Node/")
        self.heartbeats = Mirror(self.client, f"{self.prefix}/nodes/")  # agents' liveness keys (15 s leases)
        self.stop_event = threading.Event()
        self._changed = threading.Event()
        self.identities = IdentityAllocator(self.client, StoreTxnOps(), self.resources.layout.identities_prefix)
        self._next_gc = 0.0
        self._gc_marks: dict[int, float] = {}
        self.registry = Registry()
        self.m_nodes = self.registry.gauge("cilium_operator_ipam_allocated_nodes",
                                           "Nodes with a pod CIDR allocated from the cluster pool")
        self.m_gc = self.registry.gauge("cilium_operator_identity_gc_entries",
                                        "Identities alive, marked and deleted by the last garbage collector run",
                                        ["status"])
        self.m_errors = self.registry.gauge("cilium_operator_ipam_errors", "Nodes whose pod CIDR allocation failed")
        self.lbipam = LBIPAM(self.client, self.resources, self.prefix, self.registry)
        self.metrics = MetricsServer(cfg.metrics_socket, self.registry.exposition)

    def config(self) -> ClusterConfig:
        kv = self.client.get(f"{self.prefix}/config")
        return ClusterConfig.from_dict(json.loads(kv.value)) if kv else ClusterConfig()

    def run(self) -> None:
        self.metrics.start()
        mirrors = (self.nodes, self.heartbeats, *self.lbipam.mirrors)
        for mirror in mirrors:
            mirror.subscribe(lambda *_: self._changed.set())
            mirror.start()
        for mirror in mirrors:
            mirror.wait_synced(30)
        self._changed.set()
        while not self.stop_event.is_set():
            if self._changed.wait(5):
                self._changed.clear()
            try:
                self.reconcile()
                self.mark_silent_nodes()
                self.collect_identities()
                if not self.lbipam.reconcile():
                    self._changed.set()
            except Exception as exc:
                log.warning("reconcile failed: %s", exc)
                self.stop_event.wait(1)
        for mirror in mirrors:
            mirror.stop()
        self.metrics.close()

    def collect_identities(self) -> None:
        """Identity GC (every GC_INTERVAL): an identity is deleted once no node references it and no
        published endpoint carries it for IDENTITY_GC_GRACE (membrane.identity.gc). Ipcache entries of
        nodes whose Node object is gone are withdrawn first (membrane.ipcache.ownership)."""
        if time.monotonic() < self._next_gc:
            return
        self._next_gc = time.monotonic() + GC_INTERVAL
        kvs, _ = self.client.get_prefix(self.resources.layout.ipcache_prefix)
        published = {kv.key: kv.value for kv in kvs}
        names = [self.resources.decode(kv)["metadata"]["name"] for kv in self.nodes.items()]
        if self.nodes.synced and names:  # an empty node list is more likely a broken read than a dead cluster
            for key in orphaned_by_node(published, names):
                log.info("withdrawing %s: its node is gone", key)
                self.client.delete(key)
                del published[key]
        allocated, referenced = self.identities.usage()
        decision = identity_gc(allocated, referenced, identities_in_use(published.values()), self._gc_marks,
                               time.monotonic())
        self._gc_marks = decision.marks
        removed = self.identities.collect_garbage(only=decision.delete) if decision.delete else []
        self.m_gc.set(["deleted"], len(removed))
        self.m_gc.set(["alive"], len(allocated) - len(decision.marks) - len(decision.delete))
        self.m_gc.set(["marked"], len(decision.marks))
        if removed:
            log.info("identity GC removed %s", ", ".join(map(str, removed)))

    def mark_silent_nodes(self) -> None:
        """A Ready node whose agent's liveness key is gone (dead, hung or cut off for 15 s): Ready=Unknown,
        NetworkUnavailable=True. The agent marks it up again when it is back (membrane.agent.node_status)."""
        if not (self.nodes.synced and self.heartbeats.synced):
            return
        alive = {kv.key.rsplit("/", 1)[1] for kv in self.heartbeats.items()}
        for kv in self.nodes.items():
            obj = self.resources.decode(kv)
            name = obj["metadata"]["name"]
            conds = obj.get("status", {}).get("conditions", [])
            if name in alive or not is_up(conds):
                continue
            new = agent_conditions(conds, False, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            if new is None:
                continue
            obj["status"]["conditions"] = new
            try:
                self.resources.put_object(obj, expected_revision=int(obj["metadata"]["resourceVersion"]))
                log.warning("node %s: agent stopped posting node status; marked NotReady", name)
            except StoreError as exc:  # changed meanwhile (the agent came back?): next round decides again
                log.info("node %s: not marked down: %s", name, exc)

    def reconcile(self) -> None:
        cfg = self.config()
        if cfg.ipam_mode != "cluster-pool":
            return
        node_objs = [self.resources.decode(kv) for kv in self.nodes.items()]
        names = sorted(o["metadata"]["name"] for o in node_objs)
        kv = self.client.get(self.alloc_key)
        existing: dict[str, str] = json.loads(kv.value) if kv else {}
        error = ""
        try:
            networks = _node_networks(node_objs)
            check_no_overlap(cfg.cluster_pool_ipv4_pod_cidr_list, networks)
            allocated = allocate_node_cidrs(
                cfg.cluster_pool_ipv4_pod_cidr_list, cfg.cluster_pool_ipv4_mask_size, existing, names
            )
        except (PoolExhausted, ValidationError) as exc:
            error = str(exc)
            allocated = existing
            log.error("cluster-pool: %s", error)
        if allocated != existing:
            from membrane.store.etcd import Compare, Op  # local: only the operator writes this key

            cmp = [Compare.mod_revision(self.alloc_key, "=", kv.mod_revision if kv else 0)]
            res = self.client.txn(cmp, [Op.put(self.alloc_key, json.dumps(allocated, sort_keys=True))])
            if not res.succeeded:
                self._changed.set()
                return
        for obj in node_objs:
            name = obj["metadata"]["name"]
            cidr = allocated.get(name)
            self._update_node(obj, cidr, error if cidr is None else "")
        self.m_nodes.set((), sum(1 for o in node_objs if o["metadata"]["name"] in allocated))
        self.m_errors.set((), sum(1 for o in node_objs if o["metadata"]["name"] not in allocated))

    def _update_node(self, obj: dict[str, Any], cidr: str | None, error: str) -> None:
        spec = obj.setdefault("spec", {})
        status = obj.setdefault("status", {})
        want_status = {"operator-status": {"error": error}} if error else {}
        changed = False
        if cidr and spec.get("podCIDR") != cidr:
            spec["podCIDR"] = cidr
            spec["podCIDRs"] = [cidr]
            changed = True
        if status.get("ipam", {}) != want_status:
            status["ipam"] = want_status
            changed = True
        if changed:
            self.resources.put_object(obj, expected_revision=int(obj["metadata"]["resourceVersion"]))
            log.info("node %s: pod CIDR %s%s", obj["metadata"]["name"], cidr, f" ({error})" if error else "")


def _node_networks(node_objs: list[dict[str, Any]]) -> list[str]:
    nets = []
    for obj in node_objs:
        cidr = obj.get("metadata", {}).get("annotations", {}).get("membrane.io/underlay-cidr")
        if cidr and cidr not in nets:
            nets.append(cidr)
    return nets
