"""The batch path on real programs: EventMonitor in batch mode hands the records of each wake-up
as one list, and BatchDecoder turns them into lazy flows equal to the flows the per-record path
builds from the same records."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from membrane.agent.flow_batch import BatchDecoder
from membrane.agent.flows import to_flow_event
from membrane.datapath.bpf.bpf_object import BpfObject
from membrane.datapath.maps.events import decode
from membrane.datapath.maps.ipcache import IpcacheEntry
from membrane.datapath.monitor import EventMonitor
from membrane.hubble.events import EndpointInfo, flow_from_event
from membrane.hubble.lazyflow import LazyFlow
from membrane.hubble.proto.flow import flow_pb2
from tests.datapath.test_events_programs import ACK, FIN, SYN, A, B, Node, tcp

pytestmark = pytest.mark.root



@pytest.fixture
def node(pin_dir: str, lxc_object: str) -> Iterator[Node]:
    """test_events_programs' two local pods on the loaded object, its per-record monitor not started."""
    with BpfObject.open(lxc_object, pin_root=pin_dir) as obj:
        obj.load()
        n = Node(obj, pin_dir)
        try:
            for ip, record in (A, B):
                n.endpoints.update(ip, record)
                n.ipcache.update(f"{ip}/32", IpcacheEntry(record.sec_identity))
            yield n
        finally:
            n.close()


PODS = {A[0]: EndpointInfo(identity=1001, namespace="default", pod_name="a"),
        B[0]: EndpointInfo(identity=1002, namespace="default", pod_name="b")}


def test_a_handshake_read_in_batches_decodes_into_lazy_flows_equal_to_the_per_record_ones(node: Node) -> None:
    batches: list[list[bytes]] = []
    arrived = threading.Condition()

    def on_records(records: list[bytes]) -> int:
        with arrived:
            batches.append(records)
            arrived.notify_all()
        return 0

    monitor = EventMonitor(node.pin_dir, lambda _e: None, on_records=on_records)
    monitor.start()
    try:
        node.exchange(A, B, tcp(40000, 80, SYN))
        node.exchange(B, A, tcp(80, 40000, SYN | ACK))
        node.exchange(A, B, tcp(40000, 80, ACK))
        node.exchange(A, B, tcp(40000, 80, FIN | ACK))
    finally:
        monitor.stop()
    records = [r for batch in batches for r in batch]
    assert len(records) == 4  # to-endpoint only (by default no from-endpoint): SYN, SYN-ACK, ACK, FIN
    counters = monitor.counters()
    assert (counters.received, counters.delivered, counters.decode_errors) == (4, 4, 0)

    entries, bad = BatchDecoder("n1", monitor.offset_ns, to_flow_event, PODS.get).decode(records)
    assert bad == 0 and all(isinstance(e, LazyFlow) and not e.built for e in entries)
    built = [e.flow() for e in entries]  # type: ignore[union-attr]
    expected = [flow_from_event(to_flow_event(decode(r, monitor.offset_ns), "n1"), PODS.get)  # type: ignore[arg-type]
                for r in records]
    for f in (*built, *expected):
        f.uuid = ""
    assert built == expected
    assert [f.Summary for f in built] == ["TCP Flags: SYN", "TCP Flags: SYN, ACK", "TCP Flags: ACK",
                                          "TCP Flags: ACK, FIN"]
    assert built[0].source.pod_name == "a" and built[0].traffic_direction == flow_pb2.INGRESS


def test_a_full_batch_is_handed_over_and_reading_goes_on(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("membrane.datapath.bpf.ringbuf.BATCH_MAX", 3)
    for sport in range(40000, 40005):  # 5 new connections: 5 records wait before the reader starts
        node.exchange(A, B, tcp(sport, 80, SYN))
    batches: list[list[bytes]] = []
    monitor = EventMonitor(node.pin_dir, lambda _e: None, on_records=lambda r: batches.append(r) or 0)
    monitor.start()
    monitor.stop()
    assert [len(b) for b in batches] == [3, 2]
    assert monitor.counters().delivered == 5


def test_records_arriving_while_the_reader_lingers_join_one_batch(node: Node,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("membrane.datapath.monitor.BATCH_LINGER", 3.0)  # the sends below take about 1 s
    batches: list[list[bytes]] = []
    monitor = EventMonitor(node.pin_dir, lambda _e: None, on_records=lambda r: batches.append(r) or 0)
    monitor.start()
    try:
        for sport in range(41000, 41004):  # the first wakes the reader, the others arrive while it waits
            node.exchange(A, B, tcp(sport, 80, SYN))
            time.sleep(0.3)  # without the linger, the reader would have read each one by now
        deadline = time.monotonic() + 10
        while sum(map(len, batches)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        monitor.stop()
    assert [len(b) for b in batches] == [4]


def test_a_second_reader_starts_where_the_first_one_stopped(node: Node) -> None:
    # the consumer position lives in the ring's consumer page: what a reader took is gone for the next
    read: list[list[bytes]] = []
    for ports in ((42000, 42001), (42002, 42003, 42004)):
        for sport in ports:
            node.exchange(A, B, tcp(sport, 80, SYN))
        taken: list[bytes] = []
        monitor = EventMonitor(node.pin_dir, lambda _e: None, on_records=lambda r, into=taken: into.extend(r) or 0)
        monitor.start()
        monitor.stop()
        read.append(taken)
    sports = [[int.from_bytes(r[48 + 34 : 48 + 36], "big") for r in records] for records in read]
    assert sports == [[42000, 42001], [42002, 42003, 42004]]
