"""The flow pipeline's IP → pod index (membrane.agent.flows.PodIndex) follows the pod mirror's events:
a pod's change is seen at the next lookup, and costs that pod, not a decode of every pod."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from membrane.agent.flows import PodIndex
from membrane.store.kv import KV
from membrane.store.watch import WatchEvent


class Pods:
    def __init__(self) -> None:
        self.kvs: dict[str, KV] = {}
        self.subscribers: list[Callable[[list[WatchEvent]], None]] = []
        self.reads = 0

    def items(self) -> list[KV]:
        self.reads += 1
        return list(self.kvs.values())

    def subscribe(self, fn: Callable[[list[WatchEvent]], None], replay: bool = True) -> None:
        if replay and self.kvs:
            fn([WatchEvent("PUT", kv, 1) for kv in self.kvs.values()])
        self.subscribers.append(fn)

    def put(self, name: str, ip: str, labels: dict[str, str] | None = None, raw: bytes | None = None) -> None:
        key = f"/pods/default/{name}"
        pod: dict[str, Any] = {"metadata": {"name": name, "namespace": "default", "labels": labels or {}},
                               "status": {"podIP": ip} if ip else {}}
        self.kvs[key] = kv = KV(key, raw if raw is not None else json.dumps(pod).encode())
        for fn in self.subscribers:
            fn([WatchEvent("PUT", kv, 2)])

    def delete(self, name: str) -> None:
        key = f"/pods/default/{name}"
        self.kvs.pop(key)
        for fn in self.subscribers:
            fn([WatchEvent("DELETE", KV(key, b""), 3)])


def test_the_index_follows_adds_relabels_ip_changes_and_deletes() -> None:
    pods = Pods()
    pods.put("before", "10.0.1.1", {"app": "a"})  # there before the index: replayed
    index = PodIndex(pods, lambda ip: 300, "default")  # type: ignore[arg-type]
    first = index.lookup("10.0.1.1")
    assert first is not None and first.pod_name == "before" and "k8s:app=a" in first.labels
    pods.put("before", "10.0.1.1", {"app": "b"})
    info = index.lookup("10.0.1.1")
    assert info is not None and "k8s:app=b" in info.labels  # the cached answer of the old labels is gone
    pods.put("before", "10.0.1.2", {"app": "b"})
    assert index.lookup("10.0.1.1").pod_name == ""  # type: ignore[union-attr]  # only its identity now
    assert index.lookup("10.0.1.2").pod_name == "before"  # type: ignore[union-attr]
    pods.put("pending", "")  # no IP yet: not indexed
    pods.put("bad", "", raw=b"not json")  # ignored, the rest still works
    pods.delete("before")
    assert index.lookup("10.0.1.2").pod_name == ""  # type: ignore[union-attr]
    assert pods.reads == 0  # never a pass over every pod


def test_two_pods_claiming_one_ip_the_last_key_wins_and_the_other_remains() -> None:
    pods = Pods()
    index = PodIndex(pods, lambda ip: 0, "default")  # type: ignore[arg-type]
    pods.put("a-old", "10.0.1.9")
    pods.put("b-new", "10.0.1.9")
    assert index.lookup("10.0.1.9").pod_name == "b-new"  # type: ignore[union-attr]
    pods.delete("b-new")
    assert index.lookup("10.0.1.9").pod_name == "a-old"  # type: ignore[union-attr]
