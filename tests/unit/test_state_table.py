"""membrane.state.table: revisions, change feeds, waiting, indexes, thread safety."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from membrane.state.table import Table


@dataclass(frozen=True)
class Pod:
    node: str
    ip: str


def test_upsert_get_and_revisions() -> None:
    t: Table[str, Pod] = Table("pods")
    assert t.revision == 0 and len(t) == 0 and t.get("a") is None
    r1 = t.upsert("a", Pod("n1", "10.0.0.1"))
    assert r1 == 1 and t.revision == 1
    assert t.get("a") == Pod("n1", "10.0.0.1") and "a" in t
    # An equal value is not a change.
    assert t.upsert("a", Pod("n1", "10.0.0.1")) == 1
    assert t.upsert("a", Pod("n2", "10.0.0.1")) == 2
    assert t.get("a") == Pod("n2", "10.0.0.1")


def test_delete() -> None:
    t: Table[str, int] = Table("t")
    t.upsert("a", 1)
    assert t.delete("missing") is False and t.revision == 1
    assert t.delete("a") is True and t.revision == 2
    assert t.get("a") is None and len(t) == 0


def test_list_sorted_and_snapshot() -> None:
    t: Table[str, int] = Table("t")
    t.upsert_many([("b", 2), ("a", 1), ("c", 3)])
    assert t.list() == [("a", 1), ("b", 2), ("c", 3)]
    rows, rev = t.snapshot()
    assert rows == {"a": 1, "b": 2, "c": 3} and rev == 1
    assert t.keys() == {"a", "b", "c"}


def test_changes_since_gives_latest_state_in_change_order() -> None:
    t: Table[str, int] = Table("t")
    t.upsert("a", 1)  # rev 1
    t.upsert("b", 1)  # rev 2
    seen = t.revision
    t.upsert("a", 2)  # rev 3
    t.delete("b")  # rev 4
    t.upsert("c", 1)  # rev 5
    t.upsert("a", 3)  # rev 6
    cs = t.changes_since(seen)
    assert cs.complete and cs.revision == 6
    assert [(c.key, c.value, c.deleted, c.revision) for c in cs.changes] == [
        ("b", None, True, 4), ("c", 1, False, 5), ("a", 3, False, 6)]
    assert t.changes_since(6).changes == []
    everything = t.changes_since(0)
    assert {c.key for c in everything.changes} == {"a", "b", "c"}


def test_batch_writes_share_one_revision() -> None:
    t: Table[str, int] = Table("t")
    rev = t.upsert_many({"a": 1, "b": 2})
    assert rev == 1
    assert {c.revision for c in t.changes_since(0).changes} == {1}
    assert t.delete_many(["a", "b", "zz", "a"]) == 2 and t.revision == 2
    assert t.upsert_many([]) == 2  # nothing to do, no new revision


def test_replace_all() -> None:
    t: Table[str, int] = Table("t")
    t.upsert_many({"keep": 1, "change": 1, "drop": 1})
    rev = t.replace_all({"keep": 1, "change": 2, "new": 1})
    assert rev == 2
    assert t.items() == {"keep": 1, "change": 2, "new": 1}
    changed = {(c.key, c.deleted) for c in t.changes_since(1).changes}
    assert changed == {("change", False), ("new", False), ("drop", True)}
    assert t.replace_all({"keep": 1, "change": 2, "new": 1}) == 2  # identical: no revision


def test_wait_for_change_wakes_on_write() -> None:
    t: Table[str, int] = Table("t")
    threading.Timer(0.05, lambda: t.upsert("a", 1)).start()
    start = time.monotonic()
    assert t.wait_for_change(0, timeout=5.0) == 1
    assert time.monotonic() - start < 2.0


def test_wait_for_change_times_out_and_returns_immediately_if_behind() -> None:
    t: Table[str, int] = Table("t")
    start = time.monotonic()
    assert t.wait_for_change(0, timeout=0.05) == 0
    assert time.monotonic() - start >= 0.04
    t.upsert("a", 1)
    assert t.wait_for_change(0, timeout=5.0) == 1  # already past: no wait


def test_interrupt_wakes_waiters() -> None:
    t: Table[str, int] = Table("t")
    threading.Timer(0.05, t.interrupt).start()
    start = time.monotonic()
    assert t.wait_for_change(0, timeout=10.0) == 0
    assert time.monotonic() - start < 5.0


def test_initialization_flag_bumps_revision_once() -> None:
    t: Table[str, int] = Table("t", initialized=False)
    assert not t.initialized
    t.mark_initialized()
    assert t.initialized and t.revision == 1
    t.mark_initialized()
    assert t.revision == 1


def test_indexes_follow_writes() -> None:
    t: Table[str, Pod] = Table("pods")
    t.upsert("a", Pod("n1", "10.0.0.1"))
    t.add_index("node", lambda _k, v: [v.node])
    t.upsert("b", Pod("n1", "10.0.0.2"))
    t.upsert("c", Pod("n2", "10.0.0.3"))
    assert sorted(k for k, _ in t.by_index("node", "n1")) == ["a", "b"]
    t.upsert("a", Pod("n2", "10.0.0.1"))
    t.delete("b")
    assert t.by_index("node", "n1") == []
    assert sorted(k for k, _ in t.by_index("node", "n2")) == ["a", "c"]
    with pytest.raises(KeyError, match="no index 'ip'"):
        t.by_index("ip", "x")
    with pytest.raises(ValueError, match="already exists"):
        t.add_index("node", lambda _k, v: [v.node])


def test_forgotten_tombstones_make_an_incomplete_changeset() -> None:
    t: Table[int, int] = Table("t", tombstone_limit=4)
    for i in range(10):
        t.upsert(i, i)
    old = t.revision
    for i in range(8):
        t.delete(i)
    cs = t.changes_since(old)
    assert not cs.complete
    # An incomplete change set lists every live row; everything else must be treated as deleted.
    assert sorted(c.key for c in cs.changes) == [8, 9] and not any(c.deleted for c in cs.changes)
    # Recent enough consumers still get exact changes.
    recent = t.changes_since(t.revision - 1)
    assert recent.complete and [(c.key, c.deleted) for c in recent.changes] == [(7, True)]


def test_concurrent_writers() -> None:
    t: Table[tuple[int, int], int] = Table("t")
    per_thread, threads = 200, 4

    def write(n: int) -> None:
        for i in range(per_thread):
            t.upsert((n, i), i)

    workers = [threading.Thread(target=write, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(t) == per_thread * threads
    assert t.revision == per_thread * threads
    assert len(t.changes_since(0).changes) == per_thread * threads
