"""What the agent's Hubble server learns from the cluster view (the mirrors), beyond datapath events:

* ``ServiceResolver``: the Services' frontends and backends (cluster-wide, every node's NodePorts), so a
  flow names ``source_service`` / ``destination_service``; its changes are SERVICE_UPSERTED/DELETED events;
* ``AgentEventFeed``: agent events from the mirrors' changes after start (local endpoints created and
  deleted, policies updated and deleted, ipcache entries upserted and deleted), kept in a bounded ring;
* ``peer_table``: every node's Hubble server address and TLS name, for ``peer.Peer/Notify``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from membrane.hubble import agent_events as ae
from membrane.hubble.ring import FlowRing
from membrane.hubble.services import ServiceAddress, ServiceIndex
from membrane.hubbleserver.certs import server_name
from membrane.hubbleserver.peer import PeerInfo, PeerSource
from membrane.loadbalancer.frontends import Frontend, ServiceIDs, node_frontends, node_ips
from membrane.store.mirror import Mirror
from membrane.store.watch import WatchEvent

log = logging.getLogger(__name__)


def _load(value: bytes | str | None) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _objects(mirror: Mirror) -> list[dict[str, Any]]:
    return [obj for kv in mirror.items() if (obj := _load(kv.value)) is not None]


def _describe(fe: Frontend) -> tuple[Any, ...]:
    return (fe.service, fe.type, fe.ip, fe.port, fe.protocol, tuple((b.ip, b.port) for b in fe.backends))


class AgentEventFeed:
    """A bounded ring of ``GetAgentEventsResponse``; ``add`` stamps an event with the node and the time."""

    def __init__(self, node: str, capacity: int = ae.AGENT_EVENTS_CAPACITY) -> None:
        self.node = node
        self.ring = FlowRing(capacity)

    def add(self, event: Any) -> None:
        self.ring.append(ae.response(event, self.node, time.time_ns()))

    def watch_pods(self, pods: Mirror, endpoint_id: Callable[[str], int]) -> None:
        def changed(events: list[WatchEvent]) -> None:
            for ev in events:
                new, old = _load(ev.kv.value) if ev.type == "PUT" else None, _load(ev.prev_kv.value if ev.prev_kv else None)
                was, now = self._local_ip(old), self._local_ip(new)
                if now and not was and new is not None:
                    self.add(ae.endpoint_event(new, created=True, endpoint_id=endpoint_id(now)))
                elif was and not now and old is not None:
                    self.add(ae.endpoint_event(old, created=False, endpoint_id=endpoint_id(was)))
        pods.subscribe(changed, replay=False)

    def _local_ip(self, pod: dict[str, Any] | None) -> str:
        if pod is None or (pod.get("spec") or {}).get("nodeName") != self.node:
            return ""
        return str((pod.get("status") or {}).get("podIP") or "")

    def watch_policies(self, mirrors: Sequence[Mirror]) -> None:
        def changed(events: list[WatchEvent]) -> None:
            for ev in events:
                obj = _load(ev.kv.value) if ev.type == "PUT" else _load(ev.prev_kv.value if ev.prev_kv else None)
                if obj is not None:
                    self.add(ae.policy_event(obj, deleted=ev.type == "DELETE", revision=ev.revision))
        for mirror in mirrors:
            mirror.subscribe(changed, replay=False)

    def watch_ipcache(self, ipcache: Mirror, cidr_of: Callable[[str], str]) -> None:
        """IPCACHE_UPSERTED/DELETED (without the pod's name: resolving it would re-read every pod during
        churn)."""
        def changed(events: list[WatchEvent]) -> None:
            for ev in events:
                try:
                    cidr = cidr_of(ev.kv.key)
                except ValueError:
                    continue
                old = _load(ev.prev_kv.value) if ev.prev_kv else None
                new = _load(ev.kv.value) if ev.type == "PUT" else None
                if new is None and old is None:
                    continue
                self.add(ae.ipcache_event(cidr, new, old))
        ipcache.subscribe(changed, replay=False)


class ServiceResolver:
    """Service lookups for flows over the LB state the mirrors describe; reports frontend changes to
    ``feed`` as agent events."""

    def __init__(self, services: Mirror, slices: Mirror, nodes: Mirror, feed: AgentEventFeed | None = None) -> None:
        self._mirrors = (services, slices, nodes)
        self._feed = feed
        self._ids = ServiceIDs()
        self._lock = threading.Lock()
        self._index = ServiceIndex()
        self._frontends: dict[int, tuple[Any, ...]] = {}
        self.rebuild(report=False)
        # changes come in bursts (a Deployment's slices while pods start): one rebuild per burst, off the
        # mirrors' threads
        self._dirty = threading.Event()
        self._stopped = threading.Event()
        threading.Thread(target=self._run, name="hubble-services", daemon=True).start()
        for mirror in self._mirrors:
            mirror.subscribe(lambda _events: self._dirty.set(), replay=False)

    def _run(self) -> None:
        while not self._stopped.is_set():
            if self._dirty.wait(0.5):
                self._dirty.clear()
                self.rebuild()

    def stop(self) -> None:
        self._stopped.set()

    def rebuild(self, report: bool = True) -> None:
        services, slices, nodes = (_objects(m) for m in self._mirrors)
        with self._lock:
            try:
                frontends = node_frontends(services, slices, nodes, self._ids)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("service index not rebuilt: %s", exc)
                return
            self._index = ServiceIndex(
                ServiceAddress(fe.service, fe.ip, fe.port, fe.protocol, tuple((b.ip, b.port) for b in fe.backends))
                for fe in frontends)
            described = {fe.id: _describe(fe) for fe in frontends}
            upserted, deleted = ae.frontend_changes(self._frontends, described)
            self._frontends = described
        if report and self._feed is not None:
            by_id = {fe.id: fe for fe in frontends}
            for fid in upserted:
                fe = by_id[fid]
                self._feed.add(ae.service_upsert(fid, fe.service, fe.type, fe.ip, fe.port,
                                                 [(b.ip, b.port) for b in fe.backends]))
            for fid in deleted:
                self._feed.add(ae.service_delete(fid))

    def lookup(self, ip: str, port: int, protocol: str) -> tuple[str, str] | None:
        return self._index.lookup(ip, port, protocol)


def peer_table(nodes: Mirror, cluster: str, port: int, tls: bool) -> PeerSource:
    """Every node's Hubble server (its first address, ``port``), kept up to date from the nodes mirror."""
    source = PeerSource()

    def refresh(_events: object = None) -> None:
        table = {}
        for obj in _objects(nodes):
            name = str((obj.get("metadata") or {}).get("name", ""))
            ips = node_ips([obj])
            if name and ips:
                table[name] = PeerInfo(f"{ips[0]}:{port}", server_name(name, cluster) if tls else "")
        source.set(table)

    refresh()
    nodes.subscribe(refresh, replay=False)
    return source
