"""FlowRing: capacity, counters, first/last/since/until queries, following with a cursor."""

from __future__ import annotations

import threading

import pytest

from membrane.hubble.proto.flow import flow_pb2
from membrane.hubble.ring import FlowRing


def flows(n: int, start: int = 0) -> list[flow_pb2.Flow]:
    out = []
    for i in range(start, start + n):
        f = flow_pb2.Flow(uuid=str(i), node_name="n")
        f.time.FromNanoseconds(1_000_000_000 * (i + 1))
        out.append(f)
    return out


def uuids(fs: list[flow_pb2.Flow]) -> list[str]:
    return [f.uuid for f in fs]


def test_capacity_and_counters() -> None:
    ring = FlowRing(capacity=4)
    ring.extend(flows(6))
    assert len(ring) == 4 and ring.seen == 6 and ring.lost == 2 and ring.capacity == 4
    assert uuids(ring.snapshot()[0]) == ["2", "3", "4", "5"]
    assert FlowRing().capacity == 4095
    with pytest.raises(ValueError):
        FlowRing(0)


def test_queries() -> None:
    ring = FlowRing(capacity=10)
    ring.extend(flows(8))
    assert uuids(ring.query(3)[0]) == ["5", "6", "7"]
    assert uuids(ring.query(3, first=True)[0]) == ["0", "1", "2"]
    assert uuids(ring.query(since_ns=3_000_000_000, until_ns=5_000_000_000)[0]) == ["2", "3", "4"]
    odd = ring.query(2, predicate=lambda f: int(f.uuid) % 2 == 1)
    assert uuids(odd[0]) == ["5", "7"] and odd[1] == 8


def test_read_after_reports_lost() -> None:
    ring = FlowRing(capacity=3)
    ring.extend(flows(2))
    res = ring.read_after(0)
    assert uuids(res.flows) == ["0", "1"] and res.cursor == 2 and res.lost == 0
    ring.extend(flows(5, start=2))
    res = ring.read_after(res.cursor)
    assert uuids(res.flows) == ["4", "5", "6"] and res.lost == 2 and res.cursor == 7


def test_wait_wakes_on_append_and_times_out() -> None:
    ring = FlowRing()
    assert ring.wait(0, timeout=0.01) is False
    started = threading.Event()

    def writer() -> None:
        started.wait()
        ring.append(flows(1)[0])

    t = threading.Thread(target=writer)
    t.start()
    started.set()
    assert ring.wait(0, timeout=5.0) is True
    t.join()
