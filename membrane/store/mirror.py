"""A local copy of one etcd prefix, kept current by a watch in a background thread.

The mirror lists the prefix, then follows a watch from the next revision. When etcd goes away it
keeps the last known contents (so the agent keeps enforcing them), marks itself unhealthy, retries
with backoff and resumes from its revision on reconnect; if that revision was compacted meanwhile it
re-lists and emits the difference as events. Subscribers get every change as a list of WatchEvents
(one etcd batch, or one re-list diff) on the mirror's thread, in order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from membrane.store.errors import RevisionCompacted, StoreError
from membrane.store.etcd import EtcdClient
from membrane.store.kv import KV
from membrane.store.watch import Watch, WatchEvent

log = logging.getLogger(__name__)

Subscriber = Callable[[list[WatchEvent]], None]


class Mirror:
    def __init__(self, client: EtcdClient, prefix: str, *, backoff_min: float = 0.2, backoff_max: float = 5.0,
                 health_interval: float = 5.0, name: str | None = None) -> None:
        """``health_interval``: after this long without events the mirror pings etcd, so a hung (not
        just closed) connection is noticed too."""
        if not prefix:
            raise ValueError("mirror: prefix must not be empty")
        self.client = client
        self.prefix = prefix
        self.name = name or prefix
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.health_interval = health_interval
        self._data: dict[str, KV] = {}
        self._revision = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._dispatch_lock = threading.RLock()
        self._subscribers: list[Subscriber] = []
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._watch: Watch | None = None
        self._thread: threading.Thread | None = None
        self.healthy = False
        self.last_error = ""
        self.reconnects = 0
        self.relists = 0
        self._backoff = backoff_min

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Mirror:
        if self._thread is not None:
            raise RuntimeError(f"mirror {self.name}: already started")
        self._thread = threading.Thread(target=self._run, name=f"mirror-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop following etcd and join the thread; the contents stay readable."""
        self._stop.set()
        with self._lock:
            watch = self._watch
        if watch is not None:
            watch.cancel()
        if self._thread is not None:
            self._thread.join(timeout)
        self.healthy = False

    def __enter__(self) -> Mirror:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reading -----------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        """The etcd revision the contents are current to."""
        with self._lock:
            return self._revision

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def wait_synced(self, timeout: float | None = None) -> bool:
        """True once the first listing has been loaded."""
        return self._synced.wait(timeout)

    def wait_for_revision(self, revision: int, timeout: float) -> bool:
        """Block until the mirror has caught up to ``revision`` (e.g. that of our own write)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._revision < revision:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def get(self, key: str) -> KV | None:
        with self._lock:
            return self._data.get(key)

    def items(self) -> list[KV]:
        """Every KV held, sorted by key."""
        with self._lock:
            return [self._data[k] for k in sorted(self._data)]

    def snapshot(self) -> tuple[dict[str, KV], int]:
        """A copy of the contents (key -> KV) and the revision they are current to."""
        with self._lock:
            return dict(self._data), self._revision

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def status(self) -> dict[str, Any]:
        with self._lock:
            count, rev = len(self._data), self._revision
        return {"prefix": self.prefix, "healthy": self.healthy, "synced": self.synced, "revision": rev,
                "keys": count, "last_error": self.last_error, "reconnects": self.reconnects,
                "relists": self.relists}

    def subscribe(self, fn: Subscriber, replay: bool = True) -> Callable[[], None]:
        """Call ``fn(events)`` on every change; with ``replay`` it first gets the current contents as
        PUT events (exactly once, with no change lost or doubled in between). Returns an unsubscribe."""
        with self._dispatch_lock:
            if replay:
                with self._lock:
                    snapshot = [WatchEvent("PUT", kv, kv.mod_revision) for kv in self._data.values()]
                if snapshot:
                    self._call(fn, snapshot)
            self._subscribers.append(fn)

        def unsubscribe() -> None:
            with self._dispatch_lock:
                if fn in self._subscribers:
                    self._subscribers.remove(fn)

        return unsubscribe

    # -- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        self._backoff = self.backoff_min
        need_list = True
        while not self._stop.is_set():
            try:
                if need_list:
                    kvs, rev = self.client.get_prefix(self.prefix)
                    self.healthy = True
                    self._load(kvs, rev)
                    need_list = False
                self._follow()
                return  # stopped
            except RevisionCompacted as exc:
                log.info("mirror %s: %s; re-listing", self.name, exc)
                self.last_error = str(exc)
                need_list = True
                continue
            except StoreError as exc:
                if self._stop.is_set():
                    return
                if self.healthy:
                    log.warning("mirror %s: lost etcd (%s); keeping %d known keys", self.name, exc, len(self))
                self.healthy = False
                self.last_error = str(exc)
                self.reconnects += 1
            except Exception as exc:  # never let a bug end the mirror silently
                log.exception("mirror %s: unexpected error", self.name)
                self.healthy = False
                self.last_error = f"{type(exc).__name__}: {exc}"
            self._stop.wait(self._backoff)
            self._backoff = min(self._backoff * 2, self.backoff_max)

    def _follow(self) -> None:
        watch = self.client.watch(self.prefix, start_revision=self.revision + 1)
        with self._lock:
            self._watch = watch
        try:
            if self._stop.is_set():
                return
            self.healthy = True
            self.last_error = ""
            self._backoff = self.backoff_min
            while True:
                batch = watch.next_batch(timeout=self.health_interval)
                if batch is None:
                    return
                if batch:
                    self._apply(batch, watch.next_revision - 1)
                else:
                    self.client.status()  # idle: is etcd still there?
                    self._set_revision(watch.next_revision - 1)
        finally:
            with self._lock:
                self._watch = None
            watch.close()

    def _set_revision(self, revision: int) -> None:
        with self._changed:
            if revision > self._revision:
                self._revision = revision
                self._changed.notify_all()

    def _load(self, kvs: list[KV], revision: int) -> None:
        """Replace the contents with a listing; subscribers get the difference."""
        fresh = {kv.key: kv for kv in kvs}
        with self._dispatch_lock:
            with self._changed:
                old = self._data
                events = [WatchEvent("PUT", kv, kv.mod_revision, old.get(key))
                          for key, kv in fresh.items()
                          if key not in old or old[key].mod_revision != kv.mod_revision]
                events += [WatchEvent("DELETE", KV(key, b"", mod_revision=revision), revision, prev)
                           for key, prev in old.items() if key not in fresh]
                self._data = fresh
                self._revision = max(self._revision, revision)
                self._changed.notify_all()
            if self._synced.is_set():
                self.relists += 1
            self._synced.set()
            self._dispatch(events)

    def _apply(self, batch: list[WatchEvent], revision: int) -> None:
        with self._dispatch_lock:
            out = []
            with self._changed:
                for ev in batch:
                    prev = self._data.get(ev.kv.key)
                    if ev.type == "DELETE":
                        self._data.pop(ev.kv.key, None)
                        if prev is None:
                            continue
                    else:
                        self._data[ev.kv.key] = ev.kv
                    out.append(WatchEvent(ev.type, ev.kv, ev.revision, prev))
                self._revision = max(self._revision, revision)
                self._changed.notify_all()
            self._dispatch(out)

    def _dispatch(self, events: list[WatchEvent]) -> None:
        if not events:
            return
        for fn in list(self._subscribers):
            self._call(fn, events)

    def _call(self, fn: Subscriber, events: list[WatchEvent]) -> None:
        try:
            fn(events)
        except Exception:
            log.exception("mirror %s: subscriber %r failed", self.name, fn)
