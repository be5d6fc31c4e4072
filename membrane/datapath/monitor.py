"""EventMonitor: the node's datapath events (mb_events), decoded, handed to a callback.

The agent's Hubble observer subscribes with ``EventMonitor(pin_dir, on_event)``; the monitor
reads the ring buffer on its own thread (epoll, no polling), decodes each record into a
:class:`DatapathEvent` and calls ``on_event`` on that thread. With ``on_records`` (batch mode, what
the agent's flow pipeline uses) it hands over the raw records of each wake-up as one list instead. ``set_events_enabled`` switches
the datapath's event writing off and on (mb_config), e.g. for the events on/off benchmark;
``set_monitor_aggregation`` sets how many trace events it writes (membrane.model.monitor_aggregation).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from membrane.datapath.bpf.ringbuf import RingBufferReader
from membrane.datapath.maps.events import (
    EVENTS_MAP,
    ConfigMap,
    DatapathEvent,
    EventDecodeError,
    EventStatsMap,
    decode,
)
from membrane.model.monitor_aggregation import MonitorAggregation

log = logging.getLogger(__name__)
# Batch mode: after a wake-up the reader waits this long (seconds) for more records to join the
# batch; flows show up that much later, the per-wake-up costs are shared by more events.
BATCH_LINGER = 0.002


def monotonic_offset_ns() -> int:
    """Wall clock minus CLOCK_MONOTONIC (what bpf_ktime_get_ns reads), in nanoseconds."""
    before = time.monotonic_ns()
    wall = time.time_ns()
    after = time.monotonic_ns()
    return wall - (before + after) // 2


def set_events_enabled(pin_dir: str, enabled: bool) -> None:
    """Let the datapath of the node pinned at ``pin_dir`` write events, or stop it (it writes
    them by default)."""
    with ConfigMap.open(pin_dir) as config:
        config.set_events_enabled(enabled)


def set_monitor_aggregation(pin_dir: str, agg: MonitorAggregation) -> None:
    """Trace events of the node pinned at ``pin_dir`` from now on at ``agg`` (the agent's setting)."""
    with ConfigMap.open(pin_dir) as config:
        config.set_aggregation(agg)


def monitor_aggregation(pin_dir: str) -> MonitorAggregation:
    with ConfigMap.open(pin_dir) as config:
        return config.aggregation()


def events_enabled(pin_dir: str) -> bool:
    with ConfigMap.open(pin_dir) as config:
        return config.events_enabled()


@dataclass(frozen=True)
class MonitorCounters:
    received: int  # records read from the ring buffer
    delivered: int  # decoded and handed to on_event without an exception
    decode_errors: int  # records that did not decode
    handler_errors: int  # on_event raised
    emitted: int  # records the datapath wrote (all readers, since the map was created)
    lost: int  # records the datapath could not write: the ring buffer was full


class EventMonitor:
    """``EventMonitor(pin_dir, on_event).start()`` … ``stop()``; ``counters()`` any time."""

    def __init__(self, pin_dir: str, on_event: Callable[[DatapathEvent], None],
                 on_records: Callable[[list[bytes]], int] | None = None) -> None:
        """``on_records``: given, it gets the raw records in batches instead (each batch what one
        wake-up read, BATCH_LINGER after it) and returns how many of them were no event record
        (decode errors)."""
        self.pin_dir = pin_dir
        self._on_event = on_event
        self._on_records = on_records
        self.offset_ns = monotonic_offset_ns()  # wall clock minus CLOCK_MONOTONIC
        self._reader = RingBufferReader(os.path.join(pin_dir, EVENTS_MAP), self._on_record,
                                        on_batch=self.feed if on_records is not None else None,
                                        linger=BATCH_LINGER if on_records is not None else 0.0)
        self._stats: EventStatsMap | None = None
        self._final_stats = (0, 0)  # (emitted, lost) when stopped
        self._delivered = 0
        self._decode_errors = 0
        self._handler_errors = 0

    def _on_record(self, raw: bytes) -> None:
        try:
            event = decode(raw, self.offset_ns)
        except EventDecodeError as exc:
            self._decode_errors += 1
            log.warning("datapath event: %s", exc)
            return
        try:
            self._on_event(event)
        except Exception:  # noqa: BLE001 - a consumer bug must not stop the monitor
            self._handler_errors += 1
            log.exception("datapath event handler failed")
            return
        self._delivered += 1

    def feed(self, records: list[bytes]) -> None:
        """Handle records as if read from the ring buffer (what the reader calls in batch mode;
        replays and benchmarks too)."""
        if self._on_records is None:
            for raw in records:
                self._on_record(raw)
            return
        try:
            bad = self._on_records(records)
        except Exception:  # noqa: BLE001 - a consumer bug must not stop the monitor
            self._handler_errors += len(records)
            log.exception("datapath event batch handler failed")
            return
        self._decode_errors += bad
        self._delivered += len(records) - bad

    @property
    def running(self) -> bool:
        return self._reader.running

    def start(self) -> None:
        self._stats = EventStatsMap.open(self.pin_dir)
        try:
            self._reader.start()
        except BaseException:
            self._stats.close()
            self._stats = None
            raise

    def stop(self) -> None:
        """Deliver what the ring buffer holds, then stop (idempotent)."""
        self._reader.stop()
        if self._stats is not None:
            self._final_stats = self._stats.read()
            self._stats.close()
            self._stats = None

    def counters(self) -> MonitorCounters:
        emitted, lost = self._stats.read() if self._stats is not None else self._final_stats
        return MonitorCounters(
            received=self._reader.records, delivered=self._delivered, decode_errors=self._decode_errors,
            handler_errors=self._handler_errors, emitted=emitted, lost=lost,
        )

    def __enter__(self) -> EventMonitor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
