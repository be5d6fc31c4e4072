"""Watches against a real etcd: replay from a revision, live events, cancel, compaction."""

from __future__ import annotations

import threading
import time

import pytest

from membrane.store.errors import RevisionCompacted
from membrane.store.etcd import EtcdClient, Op, WatchEvent
from tests.etcd_fixture import EtcdServer, etcd_server  # noqa: F401  (fixture)


def collect(watch, count: int, timeout: float = 5.0) -> list[WatchEvent]:
    out: list[WatchEvent] = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(out)} of {count} events arrived: {out}"
        batch = watch.next_batch(timeout=left)
        assert batch is not None
        out.extend(batch)
    return out


def test_replays_events_written_before_the_watch(client: EtcdClient, ns: str) -> None:
    first = client.put(ns + "a", "1")
    client.put(ns + "b", "2")
    client.delete(ns + "a")
    client.put("/other" + ns, "x")  # outside the watched prefix
    with client.watch(ns, start_revision=first) as w:
        events = collect(w, 3)
        assert w.next_batch(timeout=0.2) == []  # nothing from outside the prefix
    assert [(e.type, e.kv.key) for e in events] == [("PUT", ns + "a"), ("PUT", ns + "b"), ("DELETE", ns + "a")]
    assert events[0].kv.value == b"1" and events[0].revision == first
    assert events[2].kv.value == b"" and events[2].revision > events[1].revision


def test_live_events_after_watch_returns(client: EtcdClient, ns: str) -> None:
    with client.watch(ns) as w:
        rev = client.put(ns + "x", "1")
        events = collect(w, 1)
        assert events[0].kv.key == ns + "x" and events[0].revision == rev
        assert w.next_revision == rev + 1
        assert w.next_batch(timeout=0.2) == []  # idle: empty, not None


def test_single_key_watch_and_prev_kv(client: EtcdClient, ns: str) -> None:
    client.put(ns + "k", "old")
    with client.watch(ns + "k", prefix=False, prev_kv=True) as w:
        client.put(ns + "k2", "not this one")
        client.put(ns + "k", "new")
        (ev,) = collect(w, 1)
    assert ev.kv.key == ns + "k" and ev.kv.value == b"new"
    assert ev.prev_kv is not None and ev.prev_kv.value == b"old"


def test_transaction_events_arrive_in_one_batch(client: EtcdClient, ns: str) -> None:
    with client.watch(ns) as w:
        res = client.txn([], [Op.put(ns + "1", "a"), Op.put(ns + "2", "b"), Op.put(ns + "3", "c")])
        batch = w.next_batch(timeout=5.0)
    assert [e.kv.key for e in batch] == [ns + "1", ns + "2", ns + "3"]
    assert {e.revision for e in batch} == {res.revision}


def test_iteration_and_cancel_from_another_thread(client: EtcdClient, ns: str) -> None:
    w = client.watch(ns)
    got: list[WatchEvent] = []
    done = threading.Event()

    def consume() -> None:
        for ev in w:
            got.append(ev)
        done.set()

    t = threading.Thread(target=consume)
    t.start()
    try:
        client.put(ns + "a", "1")
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [e.kv.key for e in got] == [ns + "a"]
        start = time.monotonic()
        w.cancel()
        assert done.wait(2.0), "iteration did not end after cancel()"
        assert time.monotonic() - start < 1.0
        assert w.cancelled
    finally:
        w.close()
        t.join(5)
    assert w.next_batch(timeout=0.1) is None


def test_compacted_start_revision_raises(client: EtcdClient, ns: str) -> None:
    old = client.put(ns + "a", "1")
    client.put(ns + "a", "2")
    now = client.put(ns + "a", "3")
    client.compact(now)
    with client.watch(ns, start_revision=old) as w, pytest.raises(RevisionCompacted) as info:
        w.next_batch(timeout=5.0)
    assert info.value.compact_revision == now
    assert client.endpoint in str(info.value)
    # Watching from the compaction point works.
    with client.watch(ns, start_revision=now) as w:
        (ev,) = collect(w, 1)
    assert ev.kv.value == b"3"


def test_many_events_across_chunks(client: EtcdClient, ns: str) -> None:
    start = client.status().revision + 1
    big = "x" * 5000
    for i in range(60):
        client.put(f"{ns}{i:03}", big)
    with client.watch(ns, start_revision=start) as w:
        events = collect(w, 60)
    assert [e.kv.key for e in events] == [f"{ns}{i:03}" for i in range(60)]
    assert all(e.kv.value == big.encode() for e in events)
