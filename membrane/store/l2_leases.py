"""L2 announcement leases in etcd: ``coordination.k8s.io/v1`` Lease objects attached to an etcd lease.

Each Service's lease lives where ``membrane get leases -n kube-system`` finds it (the resource key of a
Lease ``kube-system/cilium-l2announce-<ns>-<name>``), written with the holder's etcd lease attached, so
it disappears ``leaseDuration`` after the holder stops renewing. Creation is a create-if-absent
transaction (first come, first served); a takeover by the same node after a restart compares the
stored revision. ``holderIdentity`` is the node name, as in Cilium.
"""

from __future__ import annotations

import json
import time

from membrane.l2announce.election import Holder
from membrane.store.etcd import EtcdClient
from membrane.store.layout import ResourceKey, StoreLayout
from membrane.store.txn import Op, create_revision_eq, mod_revision_eq

LEASE_NAMESPACE = "kube-system"


class L2Leases:
    def __init__(self, client: EtcdClient, layout: StoreLayout, node: str, duration_s: float) -> None:
        self.client = client
        self.layout = layout
        self.node = node
        self.duration_s = duration_s
        self.prefix = layout.resource_prefix("coordination.k8s.io", "Lease", LEASE_NAMESPACE)

    def key(self, name: str) -> str:
        return self.layout.resource_key(ResourceKey("coordination.k8s.io", "Lease", LEASE_NAMESPACE, name))

    def holders(self) -> dict[str, tuple[Holder, int]]:
        """Lease name -> (holder, mod revision) for every L2 lease held now."""
        kvs, _ = self.client.get_prefix(self.prefix)
        out: dict[str, tuple[Holder, int]] = {}
        for kv in kvs:
            try:
                obj = json.loads(kv.value)
                name = str(obj["metadata"]["name"])
                out[name] = (Holder(str(obj["spec"]["holderIdentity"]), kv.lease), kv.mod_revision)
            except (ValueError, KeyError, TypeError):
                continue
        return out

    def _object(self, name: str, etcd_lease: int) -> str:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        micro = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        return json.dumps({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": LEASE_NAMESPACE, "creationTimestamp": now,
                         "annotations": {"membrane.io/etcd-lease": f"{etcd_lease:x}"}},
            "spec": {"holderIdentity": self.node, "leaseDurationSeconds": max(1, round(self.duration_s)),
                     "acquireTime": micro, "renewTime": micro, "leaseTransitions": 0},
        }, sort_keys=True, separators=(",", ":"))

    def acquire(self, name: str, etcd_lease: int) -> bool:
        """Create the lease if nobody holds it; True if this node now holds it."""
        key = self.key(name)
        res = self.client.txn([create_revision_eq(key, 0)], [Op.put(key, self._object(name, etcd_lease), etcd_lease)])
        return res.succeeded

    def take_over(self, name: str, etcd_lease: int, revision: int) -> bool:
        """Rewrite this node's own lease (from an older etcd lease) under ``etcd_lease``."""
        key = self.key(name)
        res = self.client.txn([mod_revision_eq(key, revision)], [Op.put(key, self._object(name, etcd_lease), etcd_lease)])
        return res.succeeded

    def release(self, name: str, revision: int) -> bool:
        key = self.key(name)
        return self.client.txn([mod_revision_eq(key, revision)], [Op.delete(key)]).succeeded
