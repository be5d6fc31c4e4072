"""This node's BPF ipcache: every pod IP in the cluster (from etcd), every node IP, and world.

Endpoints publish ``ipcache/<ip>/32`` (see membrane.agent.identities); every agent follows that prefix
through a mirror, merges it with node addresses (own node = host 1, others = remote-node 6), the CIDR
identities of policies and the world default into a desired table (prefix -> IpcacheEntry), and a
reconciler writes it to ``mb_ipcache``: each prefix its own row with its own status and retries, a
periodic full prune repairing drift. Its own controller refreshes the table, and so does the policy
controller when the CIDR prefixes of policies change (identities before rules): ``publish`` applies
the table in the caller's thread and fails unless every CIDR prefix is in.

With policyCIDRMatchMode=[nodes] the policy controller names remote node IPs that carry CIDR identities
of their own (``node_identities``): their node entries get that identity and IPCACHE_F_NODE, which keeps
them nodes for the datapath (no masquerade towards them).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import replace

from membrane.datapath.maps.ipcache import IPCACHE_F_NODE, IpcacheEntry
from membrane.datapath.maps.ops import IpcacheOps, IpcacheTarget
from membrane.endpoint.routing import NodeInfo
from membrane.ipcache.cache import IPCacheEntry, cidr_entries, merge, node_entries
from membrane.state.reconciler import Reconciler
from membrane.state.table import Table
from membrane.store.layout import StoreLayout
from membrane.store.mirror import Mirror

log = logging.getLogger(__name__)

PRUNE_SECONDS = 60.0


class NotApplied(RuntimeError):
    """Rows a step depends on are not in the map yet (their reconciler retries them)."""


class IPCacheSync:
    def __init__(self, mirror: Mirror, layout: StoreLayout, node: str, nodes: Callable[[], list[NodeInfo]],
                 target: Callable[[], IpcacheTarget | None],
                 cidrs: Callable[[], dict[str, int]] = dict, *, clock: Callable[[], float] | None = None,
                 node_identities: Callable[[], dict[str, int]] = dict) -> None:
        self.mirror = mirror
        self.layout = layout
        self.node = node
        self._nodes = nodes
        self._cidrs = cidrs
        self._node_identities = node_identities
        self._lock = threading.Lock()
        self.table: Table[str, IpcacheEntry] = Table("ipcache", initialized=False)
        extra = {} if clock is None else {"clock": clock}
        self.reconciler: Reconciler[str, IpcacheEntry] = Reconciler(
            self.table, IpcacheOps(target, self.table.items), name="bpf-ipcache", prune_interval=PRUNE_SECONDS, **extra)

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
        own = self._node_identities()  # nodes mode: remote node IPs with identities of their own
        if own:
            nodes = [[replace(e, identity=own.get(str(e.prefix.network_address), e.identity))
                      if e.prefix.prefixlen == e.prefix.max_prefixlen else e for e in entries] for entries in nodes]
        cache = merge([published, *nodes, cidr_entries(self._cidrs())])
        # The datapath is IPv4-only for now.
        return {str(e.prefix): e.identity for e in cache if e.prefix.version == 4}

    def refresh(self) -> int:
        """Make the desired table current (only changed prefixes get a new revision); returns it."""
        with self._lock:
            flagged = {f"{ip}/32" for ip in self._node_identities()}
            rows = {prefix: IpcacheEntry(identity=identity, flags=IPCACHE_F_NODE if prefix in flagged else 0)
                    for prefix, identity in self.desired().items()}
            rev = self.table.replace_all(rows)
            self.table.mark_initialized()
            return rev

    def sync(self) -> None:
        """Refresh the table and apply what is due now (the reconciler's thread retries the rest)."""
        self.refresh()
        self.reconciler.run_once()

    def publish(self) -> None:
        """``sync``, then fail unless every CIDR prefix of policy is in the map."""
        self.sync()
        behind = self.reconciler.not_done(self._cidrs())
        if behind:
            raise NotApplied(f"ipcache: {len(behind)} CIDR prefix(es) not applied: "
                             f"{next(iter(behind.values())).message or 'pending'}")
