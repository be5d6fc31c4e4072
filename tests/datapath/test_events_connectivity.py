"""Events of real traffic between pods in namespaces, read live by EventMonitor (epoll wakeups)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from membrane.datapath.maps.events import DIRECTION_EGRESS, DIRECTION_INGRESS, ConfigMap, DatapathEvent
from membrane.datapath.maps.ipcache import IpcacheEntry
from membrane.datapath.monitor import EventMonitor
from membrane.model.datapath_codes import TRACE_FROM_LXC, TRACE_REASON_NEW, TRACE_REASON_REPLY, TRACE_TO_LXC
from membrane.model.monitor_aggregation import LOW, MEDIUM, NONE, MonitorAggregation
from tests.datapath.netlab import NodeLab, Pod, ping, ping_counts

pytestmark = pytest.mark.root

ID_A, ID_B = 2001, 2002
WAIT_SECONDS = 10.0


class Collector:
    def __init__(self) -> None:
        self.events: list[DatapathEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: DatapathEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, done: Callable[[list[DatapathEvent]], bool]) -> list[DatapathEvent]:
        with self._cond:
            self._cond.wait_for(lambda: done(self.events), timeout=WAIT_SECONDS)
            return list(self.events)


@pytest.fixture
def monitored(node: NodeLab) -> Iterator[tuple[NodeLab, Collector, EventMonitor]]:
    collector = Collector()
    with ConfigMap.open(node.datapath.pin_dir) as config:  # every trace point (monitor aggregation none)
        config.set_aggregation(MonitorAggregation(NONE))
    monitor = EventMonitor(node.datapath.pin_dir, collector)
    monitor.start()
    try:
        yield node, collector, monitor
    finally:
        monitor.stop()


def _with_identity(node: NodeLab, pod: Pod, identity: int) -> None:
    record = node.datapath.endpoints.get(pod.ip)
    assert record is not None
    node.datapath.endpoints.update(pod.ip, replace(record, sec_identity=identity))
    node.datapath.ipcache.update(f"{pod.ip}/32", IpcacheEntry(identity))


def test_a_ping_between_pods_is_traced_live(monitored: tuple[NodeLab, Collector, EventMonitor]) -> None:
    node, collector, monitor = monitored
    a = node.add_pod("a", "10.200.0.10")
    b = node.add_pod("b", "10.200.0.11")
    _with_identity(node, a, ID_A)
    _with_identity(node, b, ID_B)

    result = ping(a, b.ip, count=3, interval=0.05)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ping_counts(result.stdout) == (3, 3)

    events = collector.wait_for(lambda seen: len(seen) >= 12)
    first = [(e.observation_point, e.ifindex, e.src_identity, e.dst_identity, e.direction, e.trace_reason)
             for e in events[:4]]
    assert first == [
        (TRACE_FROM_LXC, a.ifindex, ID_A, ID_B, DIRECTION_EGRESS, TRACE_REASON_NEW),
        (TRACE_TO_LXC, b.ifindex, ID_A, ID_B, DIRECTION_INGRESS, TRACE_REASON_NEW),
        (TRACE_FROM_LXC, b.ifindex, ID_B, ID_A, DIRECTION_EGRESS, TRACE_REASON_REPLY),
        (TRACE_TO_LXC, a.ifindex, ID_B, ID_A, DIRECTION_INGRESS, TRACE_REASON_REPLY),
    ]
    assert [e.ep_id for e in events[:4]] == [1, 2, 2, 1]
    # The echo request's ICMP type (8) and the reply's (0), from the captured bytes.
    assert [e.packet[14 + 20] for e in events[:4]] == [8, 8, 0, 0]
    assert abs(events[0].timestamp_ns - time.time_ns()) < 60 * 10**9
    # Monitor aggregation none: every echo and reply at both hooks (medium: test_events_programs.py).
    assert len(events) == 12
    counters = monitor.counters()
    assert counters.lost == 0 and counters.received == counters.delivered == len(collector.events)


@pytest.mark.parametrize("level,expected", [
    (MEDIUM, [TRACE_TO_LXC, TRACE_TO_LXC]),  # the first echo and the first reply: conntrack reports those
    (LOW, [TRACE_TO_LXC] * 6),  # every packet, where it is handed to its pod only
], ids=["medium", "low"])
def test_monitor_aggregation_decides_which_traces_real_pings_make(
        monitored: tuple[NodeLab, Collector, EventMonitor], level: int, expected: list[int]) -> None:
    node, collector, monitor = monitored
    with ConfigMap.open(node.datapath.pin_dir) as config:
        config.set_aggregation(MonitorAggregation(level))
    a = node.add_pod("a", "10.200.0.10")
    b = node.add_pod("b", "10.200.0.11")
    _with_identity(node, a, ID_A)
    _with_identity(node, b, ID_B)

    result = ping(a, b.ip, count=3, interval=0.05)
    assert ping_counts(result.stdout) == (3, 3), result.stdout + result.stderr
    collector.wait_for(lambda seen: len(seen) >= len(expected))
    time.sleep(0.5)  # anything more would have arrived by now
    assert [e.observation_point for e in collector.events] == expected
    assert [e.trace_reason for e in collector.events][:2] == [TRACE_REASON_NEW, TRACE_REASON_REPLY]
    assert monitor.counters().lost == 0
