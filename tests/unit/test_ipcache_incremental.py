"""The ipcache kept current by changes (membrane.ipcache.merged, the agent's incremental refresh) gives
what merging everything from scratch gives, after every step of a random history; and a pod's entry
costs its own prefix, not a pass over every pod in the cluster."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from membrane.agent.ipcache_sync import IPCacheSync
from membrane.datapath.fake import FakeDatapath
from membrane.endpoint.routing import NodeInfo
from membrane.ipcache.cache import IPCacheEntry, Source, merge
from membrane.ipcache.merged import MergedIPCache
from membrane.store.kv import KV
from membrane.store.layout import StoreLayout
from membrane.store.watch import WatchEvent

LAYOUT = StoreLayout("default")


class EventMirror:
    """A mirror that, like membrane.store.mirror.Mirror, tells subscribers which keys changed."""

    def __init__(self) -> None:
        self.kvs: dict[str, KV] = {}
        self.revision = 0
        self.subscribers: list[Callable[[list[WatchEvent]], None]] = []
        self.gets = 0

    def subscribe(self, fn: Callable[[list[WatchEvent]], None], replay: bool = True) -> Callable[[], None]:
        self.subscribers.append(fn)
        return lambda: None

    def items(self) -> list[KV]:
        return [self.kvs[k] for k in sorted(self.kvs)]

    def get(self, key: str) -> KV | None:
        self.gets += 1
        return self.kvs.get(key)

    def put(self, key: str, value: Any) -> None:
        self.revision += 1
        self.kvs[key] = kv = KV(key, value if isinstance(value, bytes) else json.dumps(value).encode(),
                                mod_revision=self.revision)
        for fn in self.subscribers:
            fn([WatchEvent("PUT", kv, self.revision)])

    def delete(self, key: str) -> None:
        self.revision += 1
        if self.kvs.pop(key, None) is not None:
            for fn in self.subscribers:
                fn([WatchEvent("DELETE", KV(key, b""), self.revision)])


def _from_scratch(merged: MergedIPCache, published: dict[str, IPCacheEntry], others: list[IPCacheEntry]) -> None:
    want = {e.prefix: e for e in merge([[published[k] for k in sorted(published)], others])}
    assert merged.entries() == want


def test_merged_cache_matches_merge_after_every_change() -> None:
    rng = random.Random(7)
    prefixes = ["10.0.1.1/32", "10.0.1.2/32", "192.168.10.101/32", "10.0.0.0/8", "0.0.0.0/0", "10.0.2.7/32"]
    merged = MergedIPCache()
    published: dict[str, IPCacheEntry] = {}
    others: list[IPCacheEntry] = []
    for _ in range(600):
        if rng.random() < 0.15:
            others = [IPCacheEntry.of(rng.choice(prefixes), rng.choice([1, 6, 16777217]),
                                      rng.choice([Source.NODE, Source.CIDR]), node=rng.choice(["", "a"]))
                      for _ in range(rng.randint(0, 4))]
            merged.set_others(others)
        else:
            key = f"k{rng.randint(0, 8)}"  # several keys may carry one prefix ("10.0.1.1" and "10.0.1.1/32")
            if rng.random() < 0.3:
                published.pop(key, None)
                merged.put(key, None)
            else:
                published[key] = entry = IPCacheEntry.of(rng.choice(prefixes), rng.randint(100, 103),
                                                         node=rng.choice(["w1", "w2"]))
                merged.put(key, entry)
        _from_scratch(merged, published, others)


def test_put_reports_only_the_prefixes_whose_winner_changed() -> None:
    merged = MergedIPCache()
    merged.set_others([IPCacheEntry.of("192.168.10.101", 6, Source.NODE, "w1")])
    a = IPCacheEntry.of("10.0.1.5/32", 300)
    assert merged.put("ipcache/a", a) == {a.prefix}
    assert merged.put("ipcache/a", a) == set()  # the same entry again changes nothing
    node = IPCacheEntry.of("192.168.10.101/32", 300)
    assert merged.put("ipcache/b", node) == set()  # a pod entry loses to the node's own
    assert merged.put("ipcache/a", None) == {a.prefix}


class Harness:
    def __init__(self) -> None:
        self.dp = FakeDatapath()
        self.mirror = EventMirror()
        self.nodes = [NodeInfo("k8s-w1", "192.168.10.101", ("10.0.1.0/24",))]
        self.cidrs: dict[str, int] = {}
        self.node_ids: dict[str, int] = {}
        self.sync = IPCacheSync(self.mirror, LAYOUT, "k8s-w1", lambda: self.nodes,  # type: ignore[arg-type]
                                lambda: self.dp.ipcache, lambda: self.cidrs, node_identities=lambda: self.node_ids)

    def check(self) -> None:
        self.sync.refresh()
        assert {k: v.identity for k, v in self.sync.table.items().items()} == self.sync.desired()
        rows = self.sync.table.items()
        assert {k for k, v in rows.items() if v.flags} == {f"{ip}/32" for ip in self.node_ids} & set(rows)


def test_incremental_refresh_matches_the_full_merge_after_every_change() -> None:
    rng = random.Random(11)
    h = Harness()
    ips = [f"10.0.{i // 4}.{i % 4 + 1}" for i in range(12)] + ["192.168.10.102"]
    h.mirror.put(LAYOUT.ipcache_key("10.0.9.9/32"), b"not json")  # ignored, also incrementally
    h.check()
    for step in range(400):
        roll = rng.random()
        ip = rng.choice(ips)
        if roll < 0.5:
            h.mirror.put(LAYOUT.ipcache_key(f"{ip}/32"), {"identity": rng.randint(256, 260), "node": "w2"})
        elif roll < 0.75:
            h.mirror.delete(LAYOUT.ipcache_key(f"{ip}/32"))
        elif roll < 0.85:
            h.cidrs = {p: 16777217 + i for i, p in enumerate(rng.sample(["10.0.0.0/8", "10.0.1.0/24", "1.1.1.1/32"],
                                                                      rng.randint(0, 2)))}
        elif roll < 0.92:
            h.nodes = [*h.nodes[:1], *([NodeInfo("k8s-w2", "192.168.10.102", ("10.0.2.0/24",))]
                                       if rng.random() < 0.5 else [])]
        else:
            h.node_ids = {"192.168.10.102": 16777300} if rng.random() < 0.5 and len(h.nodes) > 1 else {}
        if step % 3 == 0 or roll >= 0.75:
            h.check()
    h.check()


def test_one_new_pod_entry_reads_one_key_not_the_whole_mirror() -> None:
    h = Harness()
    for i in range(300):
        h.mirror.put(LAYOUT.ipcache_key(f"10.0.{i // 250}.{i % 250 + 1}/32"), {"identity": 300, "node": "w2"})
    h.check()
    h.mirror.gets = 0
    rev = h.sync.table.revision
    h.mirror.put(LAYOUT.ipcache_key("10.0.5.5/32"), {"identity": 301, "node": "w2"})
    h.sync.refresh()
    assert h.mirror.gets == 1
    changes = h.sync.table.changes_since(rev)
    assert [c.key for c in changes.changes] == ["10.0.5.5/32"]
