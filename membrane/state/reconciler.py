"""A generic reconciler: makes a target (BPF maps, netlink, a proxy) match a desired Table.

It follows the table's changes and calls ``ops.update(key, value)`` / ``ops.delete(key)`` in
batches. A failing object is retried with exponential backoff of its own while the others go on;
every object has a status (pending / done / error, message, attempts) and the reconciler a health
summary. Once the table is initialized and every object has been tried once, ``ops.prune(keys)``
(if the ops has it) removes whatever the target holds beyond the desired keys, and again every
``prune_interval`` seconds. Runs in its own thread (``start``/``stop``) or step by step with
``run_once`` (tests drive it with a fake clock), or both: a step holds a lock, so a controller that
must know its rows are in before it goes on (policy entries before enforcement) runs a step itself
while the thread keeps retrying and pruning. No I/O of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from membrane.state.table import Table

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

PENDING, DONE, ERROR = "pending", "done", "error"
UPDATE, DELETE = "update", "delete"


@dataclass(frozen=True)
class ObjectStatus:
    state: str  # pending | done | error
    op: str  # update | delete
    message: str = ""
    attempts: int = 0  # failures since the last success
    since: float = 0.0  # wall-clock time of the last state change


@dataclass(frozen=True)
class Health:
    healthy: bool
    counts: dict[str, int] = field(default_factory=dict)
    last_success: float | None = None  # wall-clock times
    last_error: str = ""
    last_error_at: float | None = None
    initial_sync_done: bool = False
    last_prune: float | None = None
    revision: int = 0  # desired-table revision processed
    rows: int = 0  # desired rows
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The shape ``membrane status`` shows (its reconcilers section)."""
        return {"name": self.name, "healthy": self.healthy, "rows": self.rows,
                "pending": self.counts.get(PENDING, 0), "done": self.counts.get(DONE, 0),
                "errors": self.counts.get(ERROR, 0), "last-error": self.last_error,
                "last-error-timestamp": self.last_error_at, "last-success-timestamp": self.last_success,
                "initial-sync-done": self.initial_sync_done, "last-full-sync": self.last_prune,
                "revision": self.revision}


class Reconciler(Generic[K, V]):
    def __init__(self, desired: Table[K, V], ops: Any, *, name: str = "", batch_size: int = 100,
                 backoff_min: float = 0.1, backoff_max: float = 30.0, prune_interval: float | None = 60.0,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time) -> None:
        """``ops`` has ``update(key, value)`` and ``delete(key)`` (raise to report failure) and
        optionally ``prune(desired_keys: set)``."""
        if batch_size < 1:
            raise ValueError(f"reconciler {name}: batch_size must be at least 1")
        self.desired = desired
        self.ops = ops
        self.name = name or desired.name
        self.batch_size = batch_size
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.prune_interval = prune_interval
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        self._step = threading.RLock()  # one step at a time, whoever drives it
        self._idle = threading.Condition(self._lock)
        self._seen_rev = -1  # nothing ingested yet
        self._queue: OrderedDict[K, tuple[str, V | None]] = OrderedDict()
        self._next_try: dict[K, float] = {}
        self._status: dict[K, ObjectStatus] = {}
        self._touched: set[K] = set()  # keys the target may hold something for
        self._first_pass: set[K] | None = None  # keys still to try once before the initial sync is done
        self._initial_sync_done = False
        self._next_prune: float | None = None
        self._prune_attempts = 0
        self._prune_error = ""
        self._last_success: float | None = None
        self._last_error = ""
        self._last_error_at: float | None = None
        self._last_prune: float | None = None
        self._stop = threading.Event()
        self._refresh = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Reconciler[K, V]:
        if self._thread is not None:
            raise RuntimeError(f"reconciler {self.name}: already started")
        self._thread = threading.Thread(target=self._run, name=f"reconciler-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.desired.interrupt()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # a bug in ops bookkeeping must not kill the loop
                log.exception("reconciler %s: unexpected error", self.name)
                self._record_error(f"{type(exc).__name__}: {exc}")
            if self._stop.is_set():
                return
            self.desired.wait_for_change(self._seen_rev, self._sleep_time())

    def _sleep_time(self) -> float:
        now = self._clock()
        wakeups = list(self._next_try.values())
        if self._next_prune is not None:
            wakeups.append(self._next_prune)
        if not wakeups:
            return 1.0
        return min(max(min(wakeups) - now, 0.001), 1.0)

    # -- one step ----------------------------------------------------------------------------

    def run_once(self) -> bool:
        """Take in table changes, do all work that is due now, prune if due.
        Returns True when nothing is left to do (no pending work, no errors waiting for a retry)."""
        with self._step:
            return self._run_step()

    def _run_step(self) -> bool:
        self._ingest()
        now = self._clock()
        with self._lock:
            due = [k for k in self._queue if self._next_try.get(k, 0.0) <= now]
        for start in range(0, len(due), self.batch_size):
            if self._stop.is_set():
                break
            for key in due[start:start + self.batch_size]:
                if key in self._queue:
                    self._apply(key)
            self._ingest()  # later batches see the newest desired state
        self._check_initial_sync()
        self._maybe_prune()
        with self._idle:
            idle = not self._queue and not self._prune_error
            self._idle.notify_all()
        return idle

    def _ingest(self) -> None:
        if self._refresh.is_set():
            self._refresh.clear()
            with self._lock:
                for key, value in self.desired.items().items():
                    self._queue[key] = (UPDATE, value)
                    self._next_try.pop(key, None)
                    self._set_status(key, PENDING, UPDATE, keep_attempts=True)
        changes = self.desired.changes_since(self._seen_rev)
        if changes.revision == self._seen_rev:
            return
        with self._lock:
            if self._first_pass is None and self.desired.initialized:
                self._first_pass = set()
                first = True
            else:
                first = False
            live: set[K] = set()
            for ch in changes.changes:
                if ch.deleted:
                    self._want_delete(ch.key)
                else:
                    live.add(ch.key)
                    self._queue[ch.key] = (UPDATE, ch.value)
                    self._queue.move_to_end(ch.key)
                    self._next_try.pop(ch.key, None)
                    self._set_status(ch.key, PENDING, UPDATE, keep_attempts=True)
            if not changes.complete:
                for key in list(self._touched | set(self._status)):
                    if key not in live:
                        self._want_delete(key)
            if first:  # objects waiting for a retry have been tried already
                self._first_pass = {k for k in self._queue if k not in self._next_try}
            self._seen_rev = changes.revision

    def _want_delete(self, key: K) -> None:
        self._next_try.pop(key, None)
        if key in self._touched:
            self._queue[key] = (DELETE, None)
            self._queue.move_to_end(key)
            self._set_status(key, PENDING, DELETE, keep_attempts=True)
        else:  # never handed to ops: nothing to undo
            self._queue.pop(key, None)
            self._status.pop(key, None)
            if self._first_pass is not None:
                self._first_pass.discard(key)

    def _apply(self, key: K) -> None:
        with self._lock:
            op, value = self._queue[key]
            self._touched.add(key)
        try:
            if op == UPDATE:
                self.ops.update(key, value)
            else:
                self.ops.delete(key)
        except Exception as exc:
            self._failed(key, op, exc)
        else:
            with self._lock:
                del self._queue[key]  # only this thread queues work, so it is still (op, value)
                self._next_try.pop(key, None)
                if op == DELETE:
                    self._status.pop(key, None)
                    self._touched.discard(key)
                else:
                    self._set_status(key, DONE, op)
                self._last_success = self._wall()
        finally:
            if self._first_pass is not None:
                self._first_pass.discard(key)

    def _failed(self, key: K, op: str, exc: Exception) -> None:
        with self._lock:
            previous = self._status.get(key)
            attempts = (previous.attempts if previous else 0) + 1
            delay = min(self.backoff_max, self.backoff_min * (2 ** (attempts - 1)))
            self._next_try[key] = self._clock() + delay
            message = f"{op} {key!r}: {type(exc).__name__}: {exc}"
            self._status[key] = ObjectStatus(ERROR, op, message, attempts, self._wall())
        self._record_error(message)
        log.debug("reconciler %s: %s (attempt %d, retry in %.2fs)", self.name, message, attempts, delay)

    def _set_status(self, key: K, state: str, op: str, keep_attempts: bool = False) -> None:
        previous = self._status.get(key)
        attempts = previous.attempts if (previous and keep_attempts) else 0
        message = previous.message if (previous and keep_attempts and state == PENDING) else ""
        self._status[key] = ObjectStatus(state, op, message, attempts, self._wall())

    def _record_error(self, message: str) -> None:
        with self._lock:
            self._last_error = message
            self._last_error_at = self._wall()

    # -- pruning -----------------------------------------------------------------------------

    def _check_initial_sync(self) -> None:
        if not self._initial_sync_done and self._first_pass is not None and not self._first_pass:
            self._initial_sync_done = True
            self._next_prune = self._clock()

    def _maybe_prune(self) -> None:
        prune = getattr(self.ops, "prune", None)
        if prune is None or self._next_prune is None or self._clock() < self._next_prune:
            return
        keys = self.desired.keys()
        try:
            prune(keys)
        except Exception as exc:
            self._prune_attempts += 1
            delay = min(self.backoff_max, self.backoff_min * (2 ** (self._prune_attempts - 1)))
            self._next_prune = self._clock() + delay
            self._prune_error = f"prune: {type(exc).__name__}: {exc}"
            self._record_error(self._prune_error)
            return
        self._prune_attempts = 0
        self._prune_error = ""
        self._last_prune = self._wall()
        self._next_prune = None if self.prune_interval is None else self._clock() + self.prune_interval

    # -- status ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Apply every desired object again (e.g. after the target was reset behind our back)."""
        self._refresh.set()
        self.desired.interrupt()

    def status(self, key: K) -> ObjectStatus | None:
        with self._lock:
            return self._status.get(key)

    def not_done(self, keys: Iterable[K]) -> dict[K, ObjectStatus]:
        """The listed keys whose last update is not applied (pending or error), with their status."""
        with self._lock:
            out = {}
            for key in keys:
                st = self._status.get(key)
                if st is not None and (st.state != DONE or st.op != UPDATE):
                    out[key] = st
            return out

    def statuses(self) -> dict[K, ObjectStatus]:
        with self._lock:
            return dict(self._status)

    def health(self) -> Health:
        with self._lock:
            counts = {PENDING: 0, DONE: 0, ERROR: 0}
            for st in self._status.values():
                counts[st.state] += 1
            return Health(
                healthy=counts[ERROR] == 0 and not self._prune_error,
                counts=counts,
                last_success=self._last_success,
                last_error=self._last_error,
                last_error_at=self._last_error_at,
                initial_sync_done=self._initial_sync_done,
                last_prune=self._last_prune,
                revision=max(self._seen_rev, 0),
                rows=len(self.desired),
                name=self.name,
            )

    def wait_done(self, revision: int | None = None, timeout: float = 5.0) -> bool:
        """Block until the table up to ``revision`` (default: now) is applied with no error or
        pending work left; False on timeout (look at ``health()`` / ``statuses()`` for why)."""
        target = self.desired.revision if revision is None else revision
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._seen_rev < target or self._queue or self._prune_error:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.1))
            return True
