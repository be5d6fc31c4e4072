"""The per-node ring of flows: bounded, with seen/lost counters, queries by number/first/last/
since/until and a cursor API to follow new flows (with a bounded wait, no busy polling).

Entries are flows or :class:`~membrane.hubble.lazyflow.LazyFlow` records; readers always get
flows (a lazy entry is built when a reader first reaches it)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from membrane.hubble.lazyflow import FlowEntry, LazyFlow, materialise
from membrane.hubble.proto.flow import flow_pb2

Predicate = Callable[[flow_pb2.Flow], bool]


@dataclass(frozen=True)
class ReadResult:
    """Flows after a cursor: `lost` counts flows overwritten before the reader got to them."""

    flows: list[flow_pb2.Flow]
    cursor: int
    lost: int


class FlowRing:
    """A ring of the last `capacity` flows (Hubble's default 4095). Thread-safe."""

    def __init__(self, capacity: int = 4095) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._flows: deque[FlowEntry] = deque(maxlen=capacity)
        self._seen = 0
        self._cond = threading.Condition()

    # counters ------------------------------------------------------------------------------
    @property
    def seen(self) -> int:
        """Flows ever added."""
        return self._seen

    @property
    def lost(self) -> int:
        """Flows overwritten because the ring was full."""
        return self._seen - len(self._flows)

    def __len__(self) -> int:
        return len(self._flows)

    # writing -------------------------------------------------------------------------------
    def append(self, flow: FlowEntry) -> int:
        """Add a flow; returns its sequence number (0-based, = seen count before)."""
        with self._cond:
            self._flows.append(flow)
            self._seen += 1
            self._cond.notify_all()
            return self._seen - 1

    def extend(self, flows: list[FlowEntry]) -> None:
        with self._cond:
            self._flows.extend(flows)
            self._seen += len(flows)
            self._cond.notify_all()

    # reading -------------------------------------------------------------------------------
    def snapshot(self) -> tuple[list[flow_pb2.Flow], int]:
        """All flows in the ring, oldest first, and the cursor just past the newest."""
        with self._cond:
            entries, seen = list(self._flows), self._seen
        return materialise(entries), seen

    def query(
        self,
        number: int = 0,
        *,
        first: bool = False,
        since_ns: int | None = None,
        until_ns: int | None = None,
        predicate: Predicate | None = None,
    ) -> tuple[list[flow_pb2.Flow], int]:
        """Matching flows oldest first: the first/last `number` (0 = all) inside [since, until].
        Also returns the cursor to `read_after` for following."""
        with self._cond:
            entries, cursor = list(self._flows), self._seen
        matched: list[flow_pb2.Flow] = []
        for entry in entries if first else reversed(entries):  # build only as far as needed
            f = entry.flow() if type(entry) is LazyFlow else entry
            if ((since_ns is None or f.time.ToNanoseconds() >= since_ns)
                    and (until_ns is None or f.time.ToNanoseconds() <= until_ns)
                    and (predicate is None or predicate(f))):
                matched.append(f)
                if number and len(matched) == number:
                    break
        if not first:
            matched.reverse()
        return matched, cursor

    def read_after(self, cursor: int) -> ReadResult:
        """Flows with sequence number >= `cursor` that are still in the ring."""
        with self._cond:
            oldest = self._seen - len(self._flows)
            lost = max(0, oldest - cursor)
            start = max(cursor, oldest) - oldest
            entries = [self._flows[i] for i in range(start, len(self._flows))]
            seen = self._seen
        return ReadResult(flows=materialise(entries), cursor=seen, lost=lost)

    def wait(self, cursor: int, timeout: float) -> bool:
        """Block until a flow past `cursor` exists or `timeout` seconds pass; True if one does."""
        with self._cond:
            return self._cond.wait_for(lambda: self._seen > cursor, timeout=timeout)
