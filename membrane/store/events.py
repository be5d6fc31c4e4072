"""The daemons' event recorder (kubelet and scheduler of the lab, the agents): Events written off the caller's thread, aggregated by name, and
collected after an hour (membrane.model.event). A failed write is dropped, as kubelet's recorder drops
events it cannot send: events inform, they never hold anything up."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from membrane.model.event import expired, make_event
from membrane.store.resources import ResourceStore

log = logging.getLogger(__name__)
GC_INTERVAL = 300.0
QUEUE_LIMIT = 1000
BATCH = 100  # events per transaction (etcd's default limit is 128 operations)


class EventRecorder:
    def __init__(self, store: ResourceStore, component: str, host: str = "") -> None:
        self.store = store
        self.component = component
        self.host = host
        self._queue: queue.Queue[tuple[dict[str, Any], str, str, str, str, str]] = queue.Queue(QUEUE_LIMIT)
        self._thread = threading.Thread(target=self._run, name=f"events-{component}", daemon=True)
        self._thread.start()

    def record(self, obj: dict[str, Any], type_: str, reason: str, message: str, component: str = "",
               host: str = "") -> None:
        """Queue an event about ``obj`` (a stored object, or one with kind and metadata name/namespace)."""
        try:
            self._queue.put_nowait((obj, type_, reason, message, component or self.component, host or self.host))
        except queue.Full:
            log.debug("event dropped (queue full): %s %s", reason, message)

    def _run(self) -> None:
        next_gc = time.monotonic() + GC_INTERVAL
        while True:
            try:
                items = [self._queue.get(timeout=5)]
            except queue.Empty:
                items = []
            while items and len(items) < BATCH:  # what queued meanwhile goes in the same transactions
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if items:
                self._write_batch(items)
            if time.monotonic() >= next_gc:
                next_gc = time.monotonic() + GC_INTERVAL
                self._collect()

    def _write_batch(self, items: list[tuple[dict[str, Any], str, str, str, str, str]]) -> None:
        """Queued events in two round trips (read the stored ones of those names, then one compare-and-swap
        per event in one transaction), not three per event; an event that lost its compare-and-swap, or
        names an event already in this batch, is written alone afterwards, aggregated on what is stored."""
        first: list[tuple[dict[str, Any], str, str, str, str, str]] = []
        later: list[tuple[dict[str, Any], str, str, str, str, str]] = []
        names: set[tuple[str, str]] = set()
        for item in items:
            meta = make_event(*item)["metadata"]
            name = (meta["namespace"], meta["name"])
            (later if name in names else first).append(item)
            names.add(name)
        try:
            probes = [make_event(*item)["metadata"] for item in first]
            stored = self.store.get_many([("core", "Event", m["namespace"], m["name"]) for m in probes])
            events = [(previous, make_event(*item, previous)) for item, previous in zip(first, stored, strict=True)]
            done = self.store.replace_many(events)
        except Exception as exc:  # the store is away: each gets its own attempts (and is dropped after them)
            log.debug("%d events not written together: %s", len(first), exc)
            done = [False] * len(first)
        for item, ok in zip(first, done, strict=True):
            if not ok:
                later.append(item)
        for item in later:
            self._write(*item)

    def _write(self, obj: dict[str, Any], type_: str, reason: str, message: str, component: str, host: str) -> None:
        for _attempt in range(3):
            try:
                probe = make_event(obj, type_, reason, message, component, host)
                meta = probe["metadata"]
                previous = self.store.get("core", "Event", meta["namespace"], meta["name"])
                event = make_event(obj, type_, reason, message, component, host, previous)
                revision = int(previous["metadata"]["resourceVersion"]) if previous else 0
                self.store.put_object(event, expected_revision=revision)
                return
            except Exception as exc:  # a conflict (retry) or the store is away (drop)
                log.debug("event %s not written: %s", reason, exc)

    def _collect(self) -> None:
        try:
            old = [e for e in self.store.list("core", "Event")[0] if expired(e)]
            if old:
                self.store.delete_many([("core", "Event", e["metadata"]["namespace"], e["metadata"]["name"])
                                        for e in old[:100]])
        except Exception as exc:
            log.debug("event collection failed: %s", exc)
