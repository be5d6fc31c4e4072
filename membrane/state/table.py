"""An in-memory table with revisions: the unit every controller reads and writes.

Each committed write (one upsert, one delete, or one batch) bumps the table revision. A consumer
remembers the revision it has seen and asks ``changes_since(rev)`` for what changed after it (the
latest state of each changed key, deletions as tombstones), or blocks in ``wait_for_change(rev)``.
Values should be immutable (frozen dataclasses): the table hands out the stored objects.
Thread-safe; no I/O.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True)
class Change(Generic[K, V]):
    """The state of ``key`` as of ``revision``: its value, or ``deleted``."""

    key: K
    value: V | None
    deleted: bool
    revision: int


@dataclass(frozen=True)
class ChangeSet(Generic[K, V]):
    """What ``changes_since`` returns. When ``complete`` is False, deletions older than the table
    keeps were forgotten: ``changes`` then holds every live row, and any key the consumer knows that
    is not among them was deleted."""

    revision: int
    changes: list[Change[K, V]]
    complete: bool = True


class Table(Generic[K, V]):
    def __init__(self, name: str, *, initialized: bool = True, tombstone_limit: int = 10000) -> None:
        """``initialized=False`` for tables filled asynchronously: consumers that must not act on a
        partial table (pruning reconcilers) wait for ``mark_initialized()``."""
        self.name = name
        self._rows: dict[K, V] = {}
        self._log: OrderedDict[K, tuple[int, bool]] = OrderedDict()  # key -> (revision, deleted), oldest first
        self._tombstones = 0
        self._tombstone_limit = tombstone_limit
        self._tombstone_floor = 0  # deletions at or below this revision may have been forgotten
        self._revision = 0
        self._initialized = initialized
        self._interrupts = 0
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._indexes: dict[str, tuple[Callable[[K, V], Iterable[Hashable]], dict[Hashable, set[K]]]] = {}

    def __repr__(self) -> str:
        return f"Table({self.name!r}, rows={len(self)}, revision={self.revision})"

    # -- reads -------------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        with self._lock:
            return self._revision

    @property
    def initialized(self) -> bool:
        with self._lock:
            return self._initialized

    def get(self, key: K) -> V | None:
        with self._lock:
            return self._rows.get(key)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._rows

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)

    def list(self) -> list[tuple[K, V]]:
        """All rows as (key, value), sorted by key when keys are comparable."""
        with self._lock:
            rows = list(self._rows.items())
        try:
            rows.sort(key=lambda kv: kv[0])  # type: ignore[arg-type, return-value]
        except TypeError:
            pass
        return rows

    def keys(self) -> set[K]:
        with self._lock:
            return set(self._rows)

    def items(self) -> dict[K, V]:
        """A copy of the rows."""
        with self._lock:
            return dict(self._rows)

    def snapshot(self) -> tuple[dict[K, V], int]:
        """The rows and the revision they are current to, read atomically."""
        with self._lock:
            return dict(self._rows), self._revision

    # -- writes ------------------------------------------------------------------------------

    def mark_initialized(self) -> None:
        with self._cond:
            if not self._initialized:
                self._initialized = True
                self._revision += 1  # wake waiters: initialization is a change consumers care about
                self._cond.notify_all()

    def upsert(self, key: K, value: V) -> int:
        """Insert or replace; a value equal to the stored one changes nothing. Returns the revision."""
        return self.upsert_many([(key, value)])

    def delete(self, key: K) -> bool:
        """Remove ``key``; False if it was not there."""
        with self._cond:
            if key not in self._rows:
                return False
            self._commit([(key, None, True)])
            return True

    def upsert_many(self, items: Mapping[K, V] | Iterable[tuple[K, V]]) -> int:
        pairs = items.items() if isinstance(items, Mapping) else items
        with self._cond:
            staged: dict[K, V] = {}
            for key, value in pairs:
                current = staged[key] if key in staged else self._rows.get(key, _MISSING)
                if current is _MISSING or current != value:
                    staged[key] = value
            writes = [(k, v, False) for k, v in staged.items()]
            self._commit(writes)
            return self._revision

    def delete_many(self, keys: Iterable[K]) -> int:
        """Remove every listed key that exists; returns how many were removed."""
        with self._cond:
            gone = [(k, None, True) for k in dict.fromkeys(keys) if k in self._rows]
            self._commit(gone)
            return len(gone)

    def replace_all(self, rows: Mapping[K, V]) -> int:
        """Make the table hold exactly ``rows`` (as one revision); returns the revision."""
        with self._cond:
            writes: list[tuple[K, V | None, bool]] = [(k, None, True) for k in self._rows if k not in rows]
            writes += [(k, v, False) for k, v in rows.items() if self._rows.get(k, _MISSING) != v]
            self._commit(writes)
            return self._revision

    def _commit(self, writes: list[tuple[K, V | None, bool]]) -> None:
        if not writes:
            return
        self._revision += 1
        rev = self._revision
        for key, value, deleted in writes:
            old = self._rows.get(key, _MISSING)
            if old is not _MISSING:
                self._unindex(key, old)  # type: ignore[arg-type]
            prev = self._log.pop(key, None)
            if prev is not None and prev[1]:
                self._tombstones -= 1
            if deleted:
                self._rows.pop(key, None)
                self._tombstones += 1
            else:
                self._rows[key] = value  # type: ignore[assignment]
                self._index(key, value)  # type: ignore[arg-type]
            self._log[key] = (rev, deleted)
        if self._tombstones > self._tombstone_limit:
            self._forget_tombstones()
        self._cond.notify_all()

    def _forget_tombstones(self) -> None:
        keep = self._tombstone_limit // 2
        for key, (rev, deleted) in list(self._log.items()):
            if self._tombstones <= keep:
                break
            if deleted:
                del self._log[key]
                self._tombstones -= 1
                self._tombstone_floor = max(self._tombstone_floor, rev)

    # -- change feeds ------------------------------------------------------------------------

    def changes_since(self, revision: int) -> ChangeSet[K, V]:
        """Every key changed after ``revision`` with its latest state, oldest change first."""
        with self._lock:
            if revision < self._tombstone_floor:
                changes = [Change(k, v, False, self._log[k][0]) for k, v in self._rows.items()]
                return ChangeSet(self._revision, changes, complete=False)
            out: list[Change[K, V]] = []
            for key, (rev, deleted) in reversed(self._log.items()):
                if rev <= revision:
                    break
                out.append(Change(key, None if deleted else self._rows[key], deleted, rev))
            out.reverse()
            return ChangeSet(self._revision, out)

    def wait_for_change(self, revision: int, timeout: float | None = None) -> int:
        """Block until the table revision is past ``revision`` (or timeout / ``interrupt()``);
        returns the current revision."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            start = self._interrupts
            while self._revision <= revision and self._interrupts == start:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(left)
            return self._revision

    def interrupt(self) -> None:
        """Wake every ``wait_for_change`` caller now (e.g. to let a consumer thread stop)."""
        with self._cond:
            self._interrupts += 1
            self._cond.notify_all()

    # -- indexes -----------------------------------------------------------------------------

    def add_index(self, name: str, fn: Callable[[K, V], Iterable[Hashable]]) -> None:
        """Index rows by the values ``fn(key, value)`` yields; query with ``by_index``."""
        with self._lock:
            if name in self._indexes:
                raise ValueError(f"table {self.name}: index {name!r} already exists")
            self._indexes[name] = (fn, {})
            for key, value in self._rows.items():
                self._index(key, value, only=name)

    def by_index(self, name: str, value: Hashable) -> list[tuple[K, V]]:
        with self._lock:
            if name not in self._indexes:
                raise KeyError(f"table {self.name}: no index {name!r}")
            keys = self._indexes[name][1].get(value, ())
            return [(k, self._rows[k]) for k in keys]

    def _index(self, key: K, value: V, only: str | None = None) -> None:
        for name, (fn, index) in self._indexes.items():
            if only is None or name == only:
                for iv in fn(key, value):
                    index.setdefault(iv, set()).add(key)

    def _unindex(self, key: K, value: V) -> None:
        for fn, index in self._indexes.values():
            for iv in fn(key, value):
                keys = index.get(iv)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[iv]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: object = _Missing()
