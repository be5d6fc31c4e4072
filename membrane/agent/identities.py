"""Endpoint identities on one node: labels → cluster-wide identity, and the ipcache entries we publish.

One controller owns it (NodeIdentities is not thread-safe): for each endpoint it computes the
identity-relevant labels (pod labels, namespace and its labels, service account, cluster), acquires
the identity (allocating it in etcd when new), releases the old one on relabel or delete, writes the
identity into the endpoint (BPF map entry included) and publishes ``ipcache/<ip>/32`` under the node
lease so every node can map the pod's IP to its identity.
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
from membrane.store.etcd import EtcdClient
from membrane.store.layout import StoreLayout
from membrane.store.txn import StoreTxnOps

log = logging.getLogger(__name__)


class EndpointIdentities:
    def __init__(self, client: EtcdClient, layout: StoreLayout, node: str, cluster: str, net: NodeNetwork,
                 pod_of: Callable[[str, str], dict[str, Any] | None],
                 namespace_labels: Callable[[str], dict[str, str]], lease: Callable[[], int]) -> None:
        self.client = client
        self.layout = layout
        self.node = node
        self.cluster = cluster
        self.net = net
        self.allocator = IdentityAllocator(client, StoreTxnOps(), layout.identities_prefix)
        self.refs = NodeIdentities(self.allocator, node, 0)
        self._pod_of = pod_of
        self._ns_labels = namespace_labels
        self._lease = lease
        self._lease_used = 0
        self._applied: dict[tuple[str, str], tuple[LabelSet, int]] = {}
        self._published: dict[str, str] = {}  # ipcache key -> value we wrote
        self._filter = LabelFilter.default()

    def security_labels(self, key: tuple[str, str]) -> list[str] | None:
        """The identity-relevant labels last applied to an endpoint (``source:key=value``)."""
        applied = self._applied.get(key)
        return applied[0].strings() if applied else None

    def labels_for(self, namespace: str, pod_name: str) -> LabelSet | None:
        pod = self._pod_of(namespace, pod_name)
        if pod is None:
            return None
        spec = pod.get("spec", {})
        return pod_identity_labels(
            pod.get("metadata", {}).get("labels") or {}, namespace, self._ns_labels(namespace),
            spec.get("serviceAccountName") or spec.get("serviceAccount") or "default", self.cluster,
            label_filter=self._filter)

    def sync(self) -> None:
        lease = self._lease()
        if lease != self._lease_used:
            # A new node lease (first start, or the old one expired): our refs must hang off it.
            self.refs = NodeIdentities(self.allocator, self.node, lease)
            self._applied.clear()
            self._published.clear()
            self._lease_used = lease
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
            new = self.refs.acquire(labels)
            self.net.set_identity(ep.container_id, ep.ifname, new)
            self._applied[key] = (labels, new)
            if applied is not None and applied[1] != new:
                self.refs.release(applied[1])
            if ep.identity != new:
                log.info("endpoint %d %s: identity %d", ep.id, ep.pod_key, new)
        self._publish_ipcache(lease)

    def _publish_ipcache(self, lease: int) -> None:
        want: dict[str, str] = {}
        for ep in self.net.endpoints.list():
            if ep.identity:
                entry = IPCacheEntry.of(f"{ep.ipv4}/32", ep.identity, Source.KVSTORE, node=self.node)
                want[self.layout.ipcache_key(f"{ep.ipv4}/32")] = json.dumps(entry.to_dict(), sort_keys=True)
        for key, value in want.items():
            if self._published.get(key) != value:
                self.client.put(key, value, lease=lease)
                self._published[key] = value
        for key in [k for k in self._published if k not in want]:
            self.client.delete(key)
            del self._published[key]
