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
import threading
import time
from collections.abc import Callable
from typing import Any

from membrane.agent.node_network import NodeNetwork
from membrane.endpoint.model import Endpoint
from membrane.identity.allocator import IdentityAllocator
from membrane.identity.labelfilter import LabelFilter
from membrane.identity.labels import LabelSet, pod_identity_labels
from membrane.identity.node_refs import NodeIdentities
from membrane.ipcache.cache import IPCacheEntry, Source
from membrane.ipcache.ownership import stale_owned
from membrane.store.etcd import EtcdClient
from membrane.store.layout import StoreLayout
from membrane.store.txn import StoreTxnOps
from membrane.store.watch import WatchEvent

log = logging.getLogger(__name__)
FULL_PASS_SECONDS = 30.0  # the incremental runs' safety net: every endpoint looked at again this often
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
        # Incremental runs: what changed since the last run (endpoints from the table's change log, pods
        # from the pod mirror's events); a full pass every FULL_PASS_SECONDS and after any failure.
        self._dirty_lock = threading.Lock()
        self._dirty_pods: set[tuple[str, str]] = set()
        self._full = True
        self._last_full = 0.0
        self._ep_version = 0
        self._eps_of_pod: dict[tuple[str, str], set[tuple[str, str]]] = {}  # (namespace, pod) -> endpoint keys
        self._pod_of_ep: dict[tuple[str, str], tuple[str, str]] = {}
        self._ipcache_key_of: dict[tuple[str, str], str] = {}  # endpoint key -> the ipcache key published
        # What ``publish`` owes etcd: the endpoints of the runs since the last publish (or all of them).
        self._unpublished: dict[tuple[str, str], Endpoint | None] = {}
        self._publish_all = False

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

    def pods_changed(self, events: list[WatchEvent]) -> None:
        """The pod mirror's events: only the endpoints of these pods need another look."""
        with self._dirty_lock:
            for ev in events:
                namespace, _, name = ev.kv.key.rpartition("/")
                self._dirty_pods.add((namespace.rpartition("/")[2], name))

    def everything_changed(self) -> None:
        """Look at every endpoint on the next run (a namespace's labels changed)."""
        with self._dirty_lock:
            self._full = True

    def sync(self, publish: bool = True) -> None:
        """Identities of the endpoints that changed (all of them on a full run) into the endpoints, then
        (``publish``) their ipcache entries into etcd. The agent's controller publishes separately, after
        it has started the policy run the new identities need: a pod's ADD waits for its policy, not for
        an etcd round trip, and the entries of the pods that arrive meanwhile go in the same transaction."""
        lease = self._lease()
        if lease != self._lease_used:
            # A new node lease (first start, or the old one expired): our refs must hang off it.
            self.refs = NodeIdentities(self.allocator, self.node, lease)
            self._applied.clear()
            self._published.clear()
            self._lease_used = lease
            self._reconciled = False
            self.everything_changed()
        with self.net.lock:
            changed, version = self.net.endpoints.changed_since(self._ep_version)
        with self._dirty_lock:
            pods, self._dirty_pods = self._dirty_pods, set()
            full = self._full or changed is None or time.monotonic() - self._last_full >= FULL_PASS_SECONDS
            self._full = False
        self._ep_version = version
        try:
            if full:
                self._last_full = time.monotonic()
                self._sync_all()
            else:
                keys = set(changed or ()) | {k for pod in pods for k in self._eps_of_pod.get(pod, ())}
                self._sync_some(keys)
        except BaseException:
            self.everything_changed()  # what this run did not finish, the next one redoes whole
            raise
        if publish:
            self.publish()

    def publish(self) -> None:
        """Write the ipcache entries the runs since the last publish changed, in transactions of up to
        ``PUBLISH_BATCH`` entries. A failure makes the next run a full one, which publishes again."""
        lease = self._lease_used
        some, self._unpublished = self._unpublished, {}
        everything, self._publish_all = self._publish_all, False
        try:
            if everything or some:  # the stage times publications, not runs that owed nothing
                with self.net.stats.stage("ipcachePublish"):
                    if everything:
                        self._publish_ipcache(lease)
                    else:
                        self._publish_some(some, lease)
            if everything and not self._reconciled:
                self._withdraw_stale()
                self._reconciled = True
        except BaseException:
            self.everything_changed()
            raise

    def _sync_all(self) -> None:
        """Every endpoint: the periodic pass, and after a start, a new lease or a failed run."""
        live = {ep.key: ep for ep in self.net.endpoints.list()}
        for key in [k for k in self._applied if k not in live]:
            _labels, old = self._applied.pop(key)
            self.refs.release(old)
        self._eps_of_pod, self._pod_of_ep = {}, {}
        for ep in live.values():
            self._index(ep)
            self._apply(ep)
        self._publish_all = True
        self._unpublished = {}

    def _sync_some(self, keys: set[tuple[str, str]]) -> None:
        """Only the endpoints added, removed or whose pod changed since the last run: O(1) per pod."""
        eps = {key: self.net.endpoints.get(*key) for key in keys}
        for key, ep in eps.items():
            if ep is None:
                if key in self._applied:
                    self.refs.release(self._applied.pop(key)[1])
                pod = self._pod_of_ep.pop(key, None)
                held = self._eps_of_pod.get(pod) if pod is not None else None
                if pod is not None and held is not None:
                    held.discard(key)
                    if not held:
                        del self._eps_of_pod[pod]
                continue
            self._index(ep)
            self._apply(ep)
        if not self._publish_all:
            self._unpublished.update(eps)

    def _index(self, ep: Endpoint) -> None:
        pod = (ep.namespace, ep.pod_name)
        self._pod_of_ep[ep.key] = pod
        self._eps_of_pod.setdefault(pod, set()).add(ep.key)

    def _apply(self, ep: Endpoint) -> None:
        labels = self.labels_for(ep.namespace, ep.pod_name)
        if labels is None:
            return
        applied = self._applied.get(ep.key)
        if applied is not None and applied[0] == labels:
            return
        with self.net.stats.stage("identityAllocation"):
            new = self.refs.acquire(labels)
        self.net.set_identity(ep.container_id, ep.ifname, new)
        self._applied[ep.key] = (labels, new)
        if applied is not None and applied[1] != new:
            self.refs.release(applied[1])
        if ep.identity != new:
            log.info("endpoint %d %s: identity %d", ep.id, ep.pod_key, new)

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

    def _publish_some(self, eps: dict[tuple[str, str], Endpoint | None], lease: int) -> None:
        """The ipcache entries of these endpoints only (the others did not change)."""
        ops = []
        written: dict[str, str | None] = {}
        for key, ep in eps.items():
            old = self._ipcache_key_of.get(key)
            new = self._entry(ep.ipv4, ep.identity) if ep is not None and ep.identity else None
            if old is not None and (new is None or new[0] != old) and old in self._published:
                ops.append(self._txn_ops.delete(old))
                written[old] = None
            if new is not None and self._published.get(new[0]) != new[1]:
                ops.append(self._txn_ops.put(new[0], new[1], lease=lease))
                written[new[0]] = new[1]
            if new is None:
                self._ipcache_key_of.pop(key, None)
            else:
                self._ipcache_key_of[key] = new[0]
        for i in range(0, len(ops), PUBLISH_BATCH):
            self.client.txn([], ops[i:i + PUBLISH_BATCH])
        for k, value in written.items():
            if value is None:
                self._published.pop(k, None)
            else:
                self._published[k] = value

    def _publish_ipcache(self, lease: int) -> None:
        """Write what changed since the last run, in transactions of up to ``PUBLISH_BATCH`` entries (one
        round trip for a burst of new pods instead of one per pod)."""
        with_ids = [ep for ep in self.net.endpoints.list() if ep.identity]
        self._ipcache_key_of = {ep.key: self._entry(ep.ipv4, ep.identity)[0] for ep in with_ids}
        want = dict(self._entry(ep.ipv4, ep.identity) for ep in with_ids)
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
