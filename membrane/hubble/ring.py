"""The per-node ring of flows: bounded, with seen/lost counters, queries by number/first/last/
since/until and a cursor API to follow new flows (with a bounded wait, no busy polling)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

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
        self._flows: deque[flow_pb2.Flow] = deque(maxlen=capacity)
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
    def append(self, flow: flow_pb2.Flow) -> int:
        """Add a flow; returns its sequence number (0-based, = seen count before)."""
        with self._cond:
            self._flows.append(flow)
            self._seen += 1
            self._cond.notify_all()
            return self._seen - 1

    def extend(self, flows: list[flow_pb2.Flow]) -> None:
        with self._cond:
            self._flows.extend(flows)
            self._seen += len(flows)
            self._cond.notify_all()

    # reading -------------------------------------------------------------------------------
    def snapshot(self) -> tuple[list[flow_pb2.Flow], int]:
        """All flows in the ring, oldest first, and the cursor just past the newest."""
        with self._cond:
            return list(self._flows), self._seen

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
        flows, cursor = self.snapshot()
        matched = [
            f
            for f in flows
            if (since_ns is None or f.time.ToNanoseconds() >= since_ns)
            and (until_ns is None or f.time.ToNanoseconds() <= until_ns)
            and (predicate is None or predicate(f))
        ]
        if number:
            matched = matched[:number] if first else matched[-number:]
        return matched, cursor

    def read_after(self, cursor: int) -> ReadResult:
        """Flows with sequence number >= `cursor` that are still in the ring."""
        with self._cond:
            oldest = self._seen - len(self._flows)
            lost = max(0, oldest - cursor)
            start = max(cursor, oldest) - oldest
            flows = [self._flows[i] for i in range(start, len(self._flows))]
            return ReadResult(flows=flows, cursor=self._seen, lost=lost)

    def wait(self, cursor: int, timeout: float) -> bool:
        """Block until a flow past `cursor` exists or `timeout` seconds pass; True if one does."""
        with self._cond:
            return self._cond.wait_for(lambda: self._seen > cursor, timeout=timeout)
