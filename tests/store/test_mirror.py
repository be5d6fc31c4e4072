"""Mirror against a real etcd, including etcd going away and coming back (same data dir and socket).

Each test starts its own etcd because the tests stop and restart it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from membrane.store.etcd import EtcdClient, WatchEvent
from membrane.store.mirror import Mirror
from tests.etcd_fixture import EtcdServer, etcd_missing_reason, running_etcd

pytestmark = pytest.mark.skipif(bool(etcd_missing_reason()), reason=etcd_missing_reason() or "etcd present")

P = "/membrane/test/nodes/"


@pytest.fixture
def server() -> Iterator[EtcdServer]:
    with running_etcd() as srv:
        yield srv


@pytest.fixture
def client(server: EtcdServer) -> Iterator[EtcdClient]:
    c = EtcdClient(server.endpoint, timeout=1.0)
    yield c
    c.close()


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[WatchEvent]] = []
        self.lock = threading.Lock()

    def __call__(self, events: list[WatchEvent]) -> None:
        with self.lock:
            self.batches.append(list(events))

    def events(self) -> list[tuple[str, str, bytes]]:
        with self.lock:
            return [(e.type, e.kv.key, e.kv.value) for b in self.batches for e in b]


def wait_until(pred, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return bool(pred())


def values(m: Mirror) -> dict[str, bytes]:
    assert [kv.key for kv in m.items()] == sorted(m.snapshot()[0])
    return {k: kv.value for k, kv in m.snapshot()[0].items()}


def test_loads_then_follows(client: EtcdClient) -> None:
    client.put(P + "a", "1")
    client.put("/membrane/test/other", "not mirrored")
    m = Mirror(client, P, health_interval=0.5).start()
    try:
        assert m.wait_synced(5.0)
        assert values(m) == {P + "a": b"1"} and m.healthy
        rec = Recorder()
        m.subscribe(rec)  # replays the current contents first
        assert rec.events() == [("PUT", P + "a", b"1")]
        rev = client.put(P + "b", "2")
        client.delete(P + "a")
        rev = client.put(P + "b", "3")
        assert m.wait_for_revision(rev, 5.0)
        assert values(m) == {P + "b": b"3"}
        assert wait_until(lambda: len(rec.events()) == 4)
        assert rec.events()[1:] == [("PUT", P + "b", b"2"), ("DELETE", P + "a", b""), ("PUT", P + "b", b"3")]
        # Deletes carry what was deleted, from the mirror's own copy.
        delete = [e for b in rec.batches for e in b if e.type == "DELETE"][0]
        assert delete.prev_kv is not None and delete.prev_kv.value == b"1"
        # Idle time passes health pings without losing health.
        time.sleep(1.2)
        assert m.healthy and m.revision >= rev
    finally:
        m.stop()
    assert not m._thread.is_alive()


def test_subscriber_errors_do_not_stop_the_mirror(client: EtcdClient) -> None:
    m = Mirror(client, P).start()
    try:
        assert m.wait_synced(5.0)

        def broken(_events: list[WatchEvent]) -> None:
            raise RuntimeError("subscriber bug")

        m.subscribe(broken)
        rec = Recorder()
        unsubscribe = m.subscribe(rec)
        client.put(P + "x", "1")
        assert wait_until(lambda: rec.events() == [("PUT", P + "x", b"1")])
        unsubscribe()
        rev = client.put(P + "y", "1")
        assert m.wait_for_revision(rev, 5.0)
        assert rec.events() == [("PUT", P + "x", b"1")]
    finally:
        m.stop()


def test_survives_etcd_stop_and_catches_up_after_restart(server: EtcdServer, client: EtcdClient) -> None:
    client.put(P + "n1", "node1")
    m = Mirror(client, P, backoff_min=0.05, backoff_max=0.3, health_interval=0.5).start()
    rec = Recorder()
    try:
        assert m.wait_synced(5.0)
        m.subscribe(rec, replay=False)
        server.stop()
        assert wait_until(lambda: not m.healthy, 5.0), "mirror did not notice etcd going away"
        assert m.last_error and server.endpoint in m.last_error
        # The last known contents stay available while etcd is gone.
        assert values(m) == {P + "n1": b"node1"}
        time.sleep(0.5)
        assert values(m) == {P + "n1": b"node1"}

        server.start()
        rev = client.put(P + "n2", "node2")
        assert m.wait_for_revision(rev, 10.0), m.status()
        assert wait_until(lambda: m.healthy, 5.0)
        assert values(m) == {P + "n1": b"node1", P + "n2": b"node2"}
        assert rec.events() == [("PUT", P + "n2", b"node2")]
        assert m.reconnects >= 1 and m.relists == 0
    finally:
        m.stop()


def test_relists_after_compaction_and_emits_the_difference(server: EtcdServer, client: EtcdClient) -> None:
    client.put(P + "keep", "k")
    client.put(P + "change", "old")
    client.put(P + "drop", "d")
    m = Mirror(client, P, backoff_min=0.05, backoff_max=0.2).start()
    gate = threading.Event()
    entered = threading.Event()
    rec = Recorder()

    def blocking(events: list[WatchEvent]) -> None:
        if any(e.kv.key == P + "block" for e in events):
            entered.set()
            gate.wait(20)

    try:
        assert m.wait_synced(5.0)
        m.subscribe(blocking, replay=False)
        m.subscribe(rec, replay=False)
        client.put(P + "block", "b")
        assert entered.wait(5.0)
        # The mirror thread is held inside a callback: change and compact history behind its back,
        # with an etcd restart so its watch breaks and it must resume from its old revision.
        server.stop()
        server.start()
        client.put(P + "change", "new")
        client.delete(P + "drop")
        client.put(P + "add", "a")
        client.delete(P + "block")
        now = client.put(P + "add", "a2")
        client.compact(now)
        gate.set()
        assert m.wait_for_revision(now, 10.0), m.status()
        assert values(m) == {P + "keep": b"k", P + "change": b"new", P + "add": b"a2"}
        assert m.relists >= 1
        assert wait_until(lambda: len(rec.events()) >= 5)
        after_block = rec.events()[1:]
        assert sorted(after_block) == sorted([
            ("PUT", P + "change", b"new"), ("DELETE", P + "drop", b""),
            ("PUT", P + "add", b"a2"), ("DELETE", P + "block", b""),
        ])
    finally:
        gate.set()
        m.stop()


def test_starts_without_etcd_and_syncs_when_it_appears(server: EtcdServer, client: EtcdClient) -> None:
    client.put(P + "a", "1")
    server.stop()
    m = Mirror(client, P, backoff_min=0.05, backoff_max=0.2).start()
    try:
        assert not m.wait_synced(0.5) and not m.healthy and len(m) == 0
        server.start()
        assert m.wait_synced(10.0)
        assert values(m) == {P + "a": b"1"}
    finally:
        m.stop()


def test_stop_is_prompt_while_waiting(client: EtcdClient) -> None:
    m = Mirror(client, P, health_interval=30.0).start()
    assert m.wait_synced(5.0)
    start = time.monotonic()
    m.stop()
    assert time.monotonic() - start < 2.0 and not m._thread.is_alive()
