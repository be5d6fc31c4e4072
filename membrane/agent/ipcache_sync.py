"""This node's BPF ipcache: every pod IP in the cluster (from etcd), every node IP, and world.

Endpoints publish ``ipcache/<ip>/32`` (see membrane.agent.identities); every agent follows that prefix
through a mirror, merges it with node addresses (own node = host 1, others = remote-node 6) and the
world default, and writes only the differences to ``mb_ipcache``. Its own controller runs it, and so
does the policy controller when the CIDR prefixes of policies change (identities before rules): a
lock keeps the two from interleaving a read of the map with the other's writes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

from membrane.datapath.loader import NodeDatapath
from membrane.datapath.maps.ipcache import IpcacheEntry
from membrane.endpoint.routing import NodeInfo
from membrane.ipcache.cache import IPCacheEntry, cidr_entries, merge, node_entries
from membrane.store.layout import StoreLayout
from membrane.store.mirror import Mirror

log = logging.getLogger(__name__)


class IPCacheSync:
    def __init__(self, mirror: Mirror, layout: StoreLayout, node: str, nodes: Callable[[], list[NodeInfo]],
                 datapath: Callable[[], NodeDatapath | None],
                 cidrs: Callable[[], dict[str, int]] = dict) -> None:
        self.mirror = mirror
        self.layout = layout
        self.node = node
        self._nodes = nodes
        self._datapath = datapath
        self._cidrs = cidrs
        self._lock = threading.Lock()

    def desired(self) -> dict[str, int]:
        published = []
        for kv in self.mirror.items():
            try:
                prefix = self.layout.parse_ipcache_key(kv.key)
                published.append(IPCacheEntry.from_dict(prefix, json.loads(kv.value)))
            except (ValueError, KeyError) as exc:
                log.warning("ignoring ipcache key %s: %s", kv.key, exc)
        nodes = [node_entries(n.name, [ip for ip in (n.internal_ip, n.router_ip) if ip], own_node=self.node)
                 for n in self._nodes() if n.internal_ip]
        cache = merge([published, *nodes, cidr_entries(self._cidrs())])
        # The datapath is IPv4-only for now.
        return {str(e.prefix): e.identity for e in cache if e.prefix.version == 4}

    def sync(self) -> None:
        with self._lock:
            self._sync()

    def _sync(self) -> None:
        dp = self._datapath()
        if dp is None:
            return
        want = self.desired()
        have = {prefix: entry.identity for prefix, entry in dp.ipcache.items()}
        for prefix, identity in want.items():
            if have.get(prefix) != identity:
                dp.ipcache.update(prefix, IpcacheEntry(identity=identity))
        for prefix in have:
            if prefix not in want:
                dp.ipcache.delete(prefix)
