"""membrane.state.reconciler driven by a fake ops object and a fake clock (no root, no threads
except in the start/stop tests)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from membrane.state.reconciler import DONE, ERROR, PENDING, Reconciler
from membrane.state.table import Table


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeOps:
    """A target that records calls; ``fail[key] = n`` makes the next n calls for key raise."""

    def __init__(self) -> None:
        self.state: dict[Any, Any] = {}
        self.calls: list[tuple[str, Any]] = []
        self.fail: dict[Any, int] = {}
        self.prunes: list[set[Any]] = []
        self.prune_fail = 0

    def _maybe_fail(self, key: Any) -> None:
        if self.fail.get(key, 0) > 0:
            self.fail[key] -= 1
            raise OSError(f"cannot write {key}")

    def update(self, key: Any, value: Any) -> None:
        self.calls.append(("update", key))
        self._maybe_fail(key)
        self.state[key] = value

    def delete(self, key: Any) -> None:
        self.calls.append(("delete", key))
        self._maybe_fail(key)
        self.state.pop(key, None)

    def prune(self, keys: set[Any]) -> None:
        self.prunes.append(set(keys))
        if self.prune_fail > 0:
            self.prune_fail -= 1
            raise OSError("prune failed")
        for key in list(self.state):
            if key not in keys:
                del self.state[key]


class NoPruneOps:
    def __init__(self) -> None:
        self.state: dict[Any, Any] = {}

    def update(self, key: Any, value: Any) -> None:
        self.state[key] = value

    def delete(self, key: Any) -> None:
        self.state.pop(key, None)


def make(table: Table[Any, Any] | None = None, ops: Any = None, **kw: Any) -> tuple[Reconciler[Any, Any], Table[Any, Any], Any, FakeClock]:
    table = table if table is not None else Table("desired")
    ops = ops if ops is not None else FakeOps()
    clock = FakeClock()
    kw.setdefault("backoff_min", 1.0)
    kw.setdefault("backoff_max", 8.0)
    return Reconciler(table, ops, clock=clock, wall_clock=clock, **kw), table, ops, clock


def test_initial_sync_applies_everything() -> None:
    r, t, ops, _ = make()
    t.upsert_many({"a": 1, "b": 2})
    assert r.run_once() is True
    assert ops.state == {"a": 1, "b": 2}
    assert r.status("a").state == DONE and r.status("b").state == DONE
    h = r.health()
    assert h.healthy and h.counts == {PENDING: 0, DONE: 2, ERROR: 0} and h.initial_sync_done
    assert h.last_success is not None and h.revision == t.revision


def test_follows_updates_and_deletes() -> None:
    r, t, ops, _ = make()
    t.upsert_many({"a": 1, "b": 2})
    r.run_once()
    t.upsert("a", 10)
    t.delete("b")
    t.upsert("c", 3)
    r.run_once()
    assert ops.state == {"a": 10, "c": 3}
    assert r.status("b") is None
    assert ops.calls[-3:] == [("update", "a"), ("delete", "b"), ("update", "c")]


def test_only_latest_value_is_applied_and_never_applied_deletes_are_skipped() -> None:
    r, t, ops, _ = make()
    t.upsert("a", 1)
    t.upsert("a", 2)
    t.upsert("gone", 1)
    t.delete("gone")
    r.run_once()
    assert ops.calls == [("update", "a")]
    assert ops.state == {"a": 2}


def test_failure_is_retried_with_exponential_backoff() -> None:
    r, t, ops, clock = make()
    ops.fail["bad"] = 3
    t.upsert_many({"bad": 1, "good": 2})
    assert r.run_once() is False
    st = r.status("bad")
    assert st.state == ERROR and st.attempts == 1 and "cannot write bad" in st.message and "update" in st.message
    assert r.status("good").state == DONE  # one failing object does not hold up the others
    h = r.health()
    assert not h.healthy and h.counts[ERROR] == 1 and "cannot write bad" in h.last_error

    def tries() -> int:
        return ops.calls.count(("update", "bad"))

    # Backoff 1s, then 2s, then 4s.
    clock.now += 0.9
    r.run_once()
    assert tries() == 1
    clock.now += 0.2
    r.run_once()
    assert tries() == 2 and r.status("bad").attempts == 2
    clock.now += 1.9
    r.run_once()
    assert tries() == 2
    clock.now += 0.2
    r.run_once()
    assert tries() == 3 and r.status("bad").attempts == 3
    clock.now += 4.1
    assert r.run_once() is True
    assert tries() == 4
    assert r.status("bad").state == DONE and r.status("bad").attempts == 0
    assert r.health().healthy and ops.state["bad"] == 1


def test_backoff_is_capped() -> None:
    r, t, ops, clock = make(backoff_min=1.0, backoff_max=3.0)
    ops.fail["k"] = 100
    t.upsert("k", 1)
    r.run_once()
    for _ in range(6):
        clock.now += 3.01
        r.run_once()
    assert ops.calls.count(("update", "k")) == 7


def test_new_desired_value_is_tried_at_once_despite_backoff() -> None:
    r, t, ops, clock = make(backoff_min=100.0, backoff_max=100.0)
    ops.fail["k"] = 1
    t.upsert("k", 1)
    r.run_once()
    assert r.status("k").state == ERROR
    t.upsert("k", 2)
    r.run_once()
    assert ops.state == {"k": 2} and r.status("k").state == DONE


def test_deleting_a_failed_object_undoes_it() -> None:
    r, t, ops, _ = make()
    ops.fail["k"] = 1
    t.upsert("k", 1)
    r.run_once()
    t.delete("k")
    r.run_once()
    assert ops.calls == [("update", "k"), ("delete", "k")]
    assert r.status("k") is None and r.health().healthy


def test_failed_delete_is_retried() -> None:
    r, t, ops, clock = make()
    t.upsert("k", 1)
    r.run_once()
    ops.fail["k"] = 1
    t.delete("k")
    r.run_once()
    st = r.status("k")
    assert st.state == ERROR and st.op == "delete"
    clock.now += 1.5
    r.run_once()
    assert r.status("k") is None and "k" not in ops.state


def test_prune_after_initial_sync_removes_strays() -> None:
    ops = FakeOps()
    ops.state = {"stray": 0, "a": 0}
    r, t, _, _ = make(ops=ops)
    t.upsert("a", 1)
    r.run_once()
    assert ops.prunes == [{"a"}]
    assert ops.state == {"a": 1}
    assert r.health().last_prune is not None


def test_no_prune_before_table_is_initialized() -> None:
    ops = FakeOps()
    ops.state = {"existing": 1}
    r, t, _, _ = make(table=Table("desired", initialized=False), ops=ops)
    t.upsert("a", 1)
    r.run_once()
    assert ops.prunes == [] and ops.state == {"existing": 1, "a": 1}
    assert not r.health().initial_sync_done
    t.upsert("existing", 1)
    t.mark_initialized()
    r.run_once()
    assert ops.prunes == [{"a", "existing"}] and ops.state == {"existing": 1, "a": 1}
    assert r.health().initial_sync_done


def test_prune_runs_when_every_object_was_tried_even_if_some_failed() -> None:
    ops = FakeOps()
    ops.state = {"stray": 0, "bad": "old"}
    ops.fail["bad"] = 1
    r, t, _, _ = make(ops=ops)
    t.upsert_many({"a": 1, "bad": 2})
    r.run_once()
    # The failing object is still desired, so prune keeps whatever the target has for it.
    assert ops.prunes == [{"a", "bad"}]
    assert ops.state == {"a": 1, "bad": "old"}
    assert r.health().initial_sync_done and not r.health().healthy


def test_periodic_prune_and_prune_failure_backoff() -> None:
    r, t, ops, clock = make(prune_interval=60.0)
    t.upsert("a", 1)
    r.run_once()
    assert len(ops.prunes) == 1
    ops.state["stray"] = 1
    clock.now += 30
    r.run_once()
    assert len(ops.prunes) == 1 and "stray" in ops.state
    ops.prune_fail = 1
    clock.now += 31
    r.run_once()
    assert len(ops.prunes) == 2 and not r.health().healthy and "prune failed" in r.health().last_error
    clock.now += 1.1  # prune retried after backoff, not after the full interval
    r.run_once()
    assert len(ops.prunes) == 3 and r.health().healthy and "stray" not in ops.state


def test_ops_without_prune() -> None:
    ops = NoPruneOps()
    r, t, _, _ = make(ops=ops)
    t.upsert("a", 1)
    assert r.run_once() is True and ops.state == {"a": 1}


def test_later_batches_see_table_changes_made_meanwhile() -> None:
    t: Table[str, int] = Table("desired")

    class DeletingOps(FakeOps):
        def update(self, key: Any, value: Any) -> None:
            super().update(key, value)
            if key == "a":
                t.delete("d")

    ops = DeletingOps()
    r, _, _, _ = make(table=t, ops=ops, batch_size=2)
    t.upsert_many({"a": 1, "b": 2, "c": 3, "d": 4})
    r.run_once()
    assert ("update", "d") not in ops.calls
    assert ops.state == {"a": 1, "b": 2, "c": 3}


def test_refresh_reapplies_everything() -> None:
    r, t, ops, _ = make()
    t.upsert_many({"a": 1, "b": 2})
    r.run_once()
    ops.state.clear()
    r.refresh()
    r.run_once()
    assert ops.state == {"a": 1, "b": 2}


def test_incomplete_change_set_deletes_what_vanished() -> None:
    t: Table[int, int] = Table("desired", tombstone_limit=2)
    r, _, ops, _ = make(table=t)
    t.upsert_many({i: i for i in range(6)})
    r.run_once()
    for i in range(5):
        t.delete(i)
    r.run_once()
    assert ops.state == {5: 5}
    assert set(r.statuses()) == {5}


def test_thread_applies_changes_and_stops_promptly() -> None:
    t: Table[str, int] = Table("desired")
    ops = FakeOps()
    r = Reconciler(t, ops, backoff_min=0.01, backoff_max=0.05)
    r.start()
    try:
        t.upsert_many({"a": 1, "b": 2})
        assert r.wait_done(timeout=5.0)
        assert ops.state == {"a": 1, "b": 2}
        ops.fail["c"] = 2
        t.upsert("c", 3)
        assert r.wait_done(timeout=5.0), r.statuses()
        assert ops.state["c"] == 3 and ops.calls.count(("update", "c")) == 3
    finally:
        start = time.monotonic()
        r.stop()
        assert time.monotonic() - start < 2.0
        assert not r._thread.is_alive()


def test_wait_done_times_out_while_an_object_keeps_failing() -> None:
    t: Table[str, int] = Table("desired")
    ops = FakeOps()
    ops.fail["x"] = 10**6
    r = Reconciler(t, ops, backoff_min=0.01, backoff_max=0.02).start()
    try:
        t.upsert("x", 1)
        assert r.wait_done(timeout=0.3) is False
        assert r.status("x").state == ERROR and r.status("x").attempts >= 2
    finally:
        r.stop()


def test_bad_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        Reconciler(Table("t"), FakeOps(), batch_size=0)


def test_not_done_names_the_rows_a_caller_waits_for() -> None:
    r, t, ops, clock = make()
    ops.fail["bad"] = 1
    t.upsert_many({"bad": 1, "good": 2})
    r.run_once()
    assert set(r.not_done(["bad", "good", "unknown"])) == {"bad"}
    t.delete("good")
    ops.fail["good"] = 1
    r.run_once()
    assert r.not_done(["good"])["good"].op == "delete"  # a delete that failed is not done either
    clock.now += 10
    r.run_once()
    assert r.not_done(["bad", "good"]) == {}


class SlowOps(FakeOps):
    def update(self, key: Any, value: Any) -> None:
        time.sleep(0.002)  # a syscall's worth of time: the thread is inside it when the caller steps
        super().update(key, value)


def test_a_caller_can_run_steps_while_the_thread_runs() -> None:
    table: Table[int, int] = Table("desired")
    ops = SlowOps()
    r = Reconciler(table, ops, backoff_min=0.01).start()
    try:
        for i in range(200):
            table.upsert(i, i)
            r.run_once()  # the caller's own step: its row is in when it returns
            assert ops.state.get(i) == i and not r.not_done([i])
    finally:
        r.stop()
    assert r.health().counts[DONE] == 200
