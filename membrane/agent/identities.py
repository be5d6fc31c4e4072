"""Endpoint identities on one node: labels → cluster-wide identity, and the ipcache entries we publish.

One controller owns it (NodeIdentities is not thread-safe): for each endpoint it computes the
identity-relevant labels (pod labels, namespace and its labels, service account, cluster), acquires
the identity (allocating it in etcd when new), releases the old one on relabel or delete, writes the
identity into the endpoint (BPF map entry included) and publishes ``ipcache/<ip>/32`` so every node
can map the pod's IP to its identity.

Identity references and ipcache entries hang off the agent's *endpoint lease* (15 minutes, kept in the
node's state directory across restarts), not the node's 15-second liveness lease: they say "these
endpoints exist", which stays true while the agent is dead or restarting. After a start or a new
lease, the first sync also withdraws what an earlier incarnation published for endpoints that are
gone (membrane.ipcache.ownership).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from membrane.agent.node_network import NodeNetwork
from membrane.identity.allocator import IdentityAllocator
from membrane.identity.labelfilter import LabelFilter
from membrane.identity.labels import LabelSet, pod_identity_labels
from membrane.identity.node_refs import NodeIdentities
from membrane.ipcache.cache import IPCacheEntry, Source
from membrane.ipcache.ownership import stale_owned
from membrane.store.etcd import EtcdClient
from membrane.store.layout import StoreLayout
from membrane.store.txn import StoreTxnOps

log = logging.getLogger(__name__)
PUBLISH_BATCH = 100  # ipcache writes per etcd transaction (etcd's default limit is 128 operations)


class EndpointIdentities:
    def __init__(self, client: EtcdClient, layout: StoreLayout, node: str, cluster: str, net: NodeNetwork,
                 pod_of: Callable[[str, str], dict[str, Any] | None],
                 namespace_labels: Callable[[str], dict[str, str]], lease: Callable[[], int]) -> None:
        self.client = client
        self.layout = layout
        self.node = node
        self.cluster = cluster
        self.net = net
        self._txn_ops = StoreTxnOps()
        self.allocator = IdentityAllocator(client, self._txn_ops, layout.identities_prefix)
        self.refs = NodeIdentities(self.allocator, node, 0)
        self._pod_of = pod_of
        self._ns_labels = namespace_labels
        self._lease = lease
        self._lease_used = 0
        self._reconciled = False
        self._applied: dict[tuple[str, str], tuple[LabelSet, int]] = {}
        self._published: dict[str, str] = {}  # ipcache key -> value we wrote
        self._filter = LabelFilter.default()
        self._label_memo: dict[tuple[str, str], tuple[dict[str, Any], dict[str, str], LabelSet]] = {}
        self._entry_memo: dict[tuple[str, int], tuple[str, str]] = {}  # (ip, identity) -> (key, value)

    def security_labels(self, key: tuple[str, str]) -> list[str] | None:
        """The identity-relevant labels last applied to an endpoint (``source:key=value``)."""
        applied = self._applied.get(key)
        return applied[0].strings() if applied else None

    def labels_for(self, namespace: str, pod_name: str) -> LabelSet | None:
        pod = self._pod_of(namespace, pod_name)
        if pod is None:
            self._label_memo.pop((namespace, pod_name), None)
            return None
        ns_labels = self._ns_labels(namespace)
        memo = self._label_memo.get((namespace, pod_name))
        # The pod lookup hands out one object per revision: the same object and namespace labels give
        # the same identity labels, without filtering them again (this runs per endpoint per pod event).
        if memo is not None and memo[0] is pod and memo[1] == ns_labels:
            return memo[2]
        spec = pod.get("spec", {})
        labels = pod_identity_labels(
            pod.get("metadata", {}).get("labels") or {}, namespace, ns_labels,
            spec.get("serviceAccountName") or spec.get("serviceAccount") or "default", self.cluster,
            label_filter=self._filter)
        self._label_memo[(namespace, pod_name)] = (pod, ns_labels, labels)
        return labels

    def sync(self) -> None:
        lease = self._lease()
        if lease != self._lease_used:
            # A new node lease (first start, or the old one expired): our refs must hang off it.
            self.refs = NodeIdentities(self.allocator, self.node, lease)
            self._applied.clear()
            self._published.clear()
            self._lease_used = lease
            self._reconciled = False
        live = {ep.key: ep for ep in self.net.endpoints.list()}
        for key in [k for k in self._applied if k not in live]:
            _labels, old = self._applied.pop(key)
            self.refs.release(old)
        for key, ep in live.items():
            labels = self.labels_for(ep.namespace, ep.pod_name)
            if labels is None:
                continue
            applied = self._applied.get(key)
            if applied is not None and applied[0] == labels:
                continue
            with self.net.stats.stage("identityAllocation"):
                new = self.refs.acquire(labels)
            self.net.set_identity(ep.container_id, ep.ifname, new)
            self._applied[key] = (labels, new)
            if applied is not None and applied[1] != new:
                self.refs.release(applied[1])
            if ep.identity != new:
                log.info("endpoint %d %s: identity %d", ep.id, ep.pod_key, new)
        with self.net.stats.stage("ipcachePublish"):
            self._publish_ipcache(lease)
        if not self._reconciled:
            self._withdraw_stale()
            self._reconciled = True

    def _withdraw_stale(self) -> None:
        """Drop what an earlier incarnation of this agent published for endpoints that are gone."""
        kvs, _ = self.client.get_prefix(self.layout.ipcache_prefix)
        for key in stale_owned({kv.key: kv.value for kv in kvs}, self.node, self._published):
            log.info("withdrawing %s: no such endpoint on this node any more", key)
            self.client.delete(key)
        held = self.refs.identities()
        for n in self.allocator.node_references(self.node):
            if n not in held:
                log.info("dropping this node's reference to identity %d: no endpoint uses it", n)
                self.allocator.release(self.node, n)

    def _entry(self, ip: str, identity: int) -> tuple[str, str]:
        """The ipcache key and value of one endpoint, encoded once per (IP, identity)."""
        hit = self._entry_memo.get((ip, identity))
        if hit is None:
            entry = IPCacheEntry.of(f"{ip}/32", identity, Source.KVSTORE, node=self.node)
            hit = (self.layout.ipcache_key(f"{ip}/32"), json.dumps(entry.to_dict(), sort_keys=True))
            self._entry_memo[(ip, identity)] = hit
        return hit

    def _publish_ipcache(self, lease: int) -> None:
        """Write what changed since the last run, in transactions of up to ``PUBLISH_BATCH`` entries (one
        round trip for a burst of new pods instead of one per pod)."""
        want = dict(self._entry(ep.ipv4, ep.identity) for ep in self.net.endpoints.list() if ep.identity)
        if len(self._entry_memo) > 2 * len(want) + 64:  # endpoints gone or relabelled
            self._entry_memo = {k: v for k, v in self._entry_memo.items() if v[0] in want}
        ops = [self._txn_ops.put(key, value, lease=lease) for key, value in want.items()
               if self._published.get(key) != value]
        gone = [key for key in self._published if key not in want]
        ops += [self._txn_ops.delete(key) for key in gone]
        for i in range(0, len(ops), PUBLISH_BATCH):
            self.client.txn([], ops[i:i + PUBLISH_BATCH])
        for key, value in want.items():
            self._published[key] = value
        for key in gone:
            del self._published[key]
