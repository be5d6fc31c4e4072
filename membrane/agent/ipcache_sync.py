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
from ipaddress import ip_network

from membrane.datapath.maps.ipcache import IPCACHE_F_NODE, IpcacheEntry
from membrane.datapath.maps.ops import IpcacheOps, IpcacheTarget
from membrane.endpoint.routing import NodeInfo
from membrane.ipcache.cache import IPCacheEntry, cidr_entries, merge, node_entries
from membrane.ipcache.merged import MergedIPCache
from membrane.state.reconciler import Reconciler
from membrane.state.table import Table
from membrane.store.kv import KV
from membrane.store.layout import StoreLayout
from membrane.store.mirror import Mirror
from membrane.store.watch import WatchEvent

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
        # Incremental refresh: the mirror's events name the keys that changed since the last run, and only
        # those are decoded and re-merged (a mirror without events is read whole each run).
        self._merged = MergedIPCache()
        self._flagged: set[str] = set()
        self._dirty_lock = threading.Lock()
        self._dirty: set[str] = set()
        self._full = True
        subscribe = getattr(mirror, "subscribe", None)
        self._incremental = subscribe is not None
        if subscribe is not None:
            subscribe(self._on_events, replay=False)

    def _on_events(self, events: list[WatchEvent]) -> None:
        with self._dirty_lock:
            self._dirty.update(ev.kv.key for ev in events)

    def _decode(self, kv: KV | None) -> IPCacheEntry | None:
        if kv is None:
            return None
        try:
            return IPCacheEntry.from_dict(self.layout.parse_ipcache_key(kv.key), json.loads(kv.value))
        except (ValueError, KeyError) as exc:
            log.warning("ignoring ipcache key %s: %s", kv.key, exc)
            return None

    def _others(self) -> tuple[list[IPCacheEntry], set[str]]:
        """The entries of every source but the published ones (nodes, CIDR prefixes of policy), and the
        prefixes of remote nodes that carry CIDR identities of their own (flagged as nodes)."""
        nodes = [node_entries(n.name, [ip for ip in (n.internal_ip, n.router_ip) if ip], own_node=self.node)
                 for n in self._nodes() if n.internal_ip]
        own = self._node_identities()  # nodes mode: remote node IPs with identities of their own
        if own:
            nodes = [[replace(e, identity=own.get(str(e.prefix.network_address), e.identity))
                      if e.prefix.prefixlen == e.prefix.max_prefixlen else e for e in entries] for entries in nodes]
        return [e for entries in nodes for e in entries] + cidr_entries(self._cidrs()), {f"{ip}/32" for ip in own}

    def desired(self) -> dict[str, int]:
        """Every prefix's identity, merged from scratch (the incremental ``refresh`` must agree with it)."""
        published = [e for kv in self.mirror.items() if (e := self._decode(kv)) is not None]
        cache = merge([published, self._others()[0]])
        # The datapath is IPv4-only for now.
        return {str(e.prefix): e.identity for e in cache if e.prefix.version == 4}

    def refresh(self) -> int:
        """Make the desired table current (only changed prefixes get a new revision); returns it. Costs
        what changed since the last run: the published keys the mirror's events named, and the prefixes
        of nodes and CIDRs when those changed."""
        if not self._incremental:
            return self._refresh_all()
        with self._lock:
            with self._dirty_lock:
                full, dirty = self._full, self._dirty
                self._full, self._dirty = False, set()
            others, flagged = self._others()
            touched = self._merged.set_others(others)
            if full:
                kvs = {kv.key: kv for kv in self.mirror.items()}
                dirty = set(kvs) | self._merged.published_keys()
                for key in dirty:
                    touched |= self._merged.put(key, self._decode(kvs.get(key)))
            else:
                for key in dirty:
                    touched |= self._merged.put(key, self._decode(self.mirror.get(key)))
            entries = self._merged.entries()
            if full:
                touched = set(entries)
            chosen = {str(p): e for p in touched if (e := entries.get(p)) is not None}
            names = {str(p) for p in touched} | (flagged ^ self._flagged) | (set(self.table.keys()) if full else set())
            self._flagged = flagged
            for name in names - set(chosen):  # a node's flag changed, or a row no source has any more
                e = entries.get(ip_network(name))
                if e is not None:
                    chosen[name] = e
            rows = {name: IpcacheEntry(identity=e.identity, flags=IPCACHE_F_NODE if name in flagged else 0)
                    for name, e in chosen.items() if e.prefix.version == 4}
            self.table.upsert_many({k: v for k, v in rows.items() if self.table.get(k) != v})
            self.table.delete_many([name for name in names if name not in rows and name in self.table])
            self.table.mark_initialized()
            return self.table.revision

    def _refresh_all(self) -> int:
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
