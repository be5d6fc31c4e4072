"""Walking a BPF ring buffer's records (membrane.datapath.bpf.ringbuf.take_records) over a hand-made
data area laid out as the kernel lays it out: 8-byte headers (length with the busy and discard bits),
records padded to 8 bytes, the area mapped twice so that a record wrapping around the end reads
contiguously. The real mapping is read in tests/datapath/test_events_batches.py."""

from __future__ import annotations

import struct

from membrane.datapath.bpf.ringbuf import BUSY_BIT, DISCARD_BIT, take_records

SIZE = 64  # bytes of data area (a power of two)
BASE = 16  # where the data area starts in the buffer (the producer page in the real mapping)


class Ring:
    def __init__(self, start: int = 0) -> None:
        self.area = bytearray(SIZE)
        self.prod = start

    def write(self, payload: bytes, flags: int = 0) -> None:
        record = struct.pack("=II", len(payload) | flags, 0) + payload
        record += bytes(-len(record) % 8)
        for i, byte in enumerate(record):
            self.area[(self.prod + i) % SIZE] = byte
        self.prod += len(record)

    def mapping(self) -> bytes:
        return bytes(BASE) + bytes(self.area) * 2


def take(ring: Ring, cons: int, limit: int = 100) -> tuple[list[bytes], int]:
    return take_records(ring.mapping(), BASE, SIZE - 1, cons, ring.prod, limit)


def test_committed_records_come_out_in_order_and_the_position_moves_past_their_padding() -> None:
    ring = Ring()
    ring.write(b"abc")
    ring.write(b"12345678")
    assert take(ring, 0) == ([b"abc", b"12345678"], 16 + 16)


def test_a_busy_record_stops_the_walk_before_it() -> None:
    ring = Ring()
    ring.write(b"one")
    ring.write(b"two", BUSY_BIT)
    ring.write(b"three")
    assert take(ring, 0) == ([b"one"], 16)


def test_a_discarded_record_is_consumed_but_not_handed_over() -> None:
    ring = Ring()
    ring.write(b"gone", DISCARD_BIT)
    ring.write(b"kept")
    assert take(ring, 0) == ([b"kept"], 32)


def test_a_record_wrapping_around_the_end_reads_whole() -> None:
    ring = Ring(start=48)  # positions keep growing: the consumer is at 48, the area wraps at 64
    ring.write(b"0123456789abcdef")  # header at 48..55, payload 56..71: wraps
    ring.write(b"x")
    assert take(ring, 48) == ([b"0123456789abcdef", b"x"], 48 + 24 + 16)


def test_at_most_limit_records_are_taken_and_the_rest_waits() -> None:
    ring = Ring()
    for payload in (b"a", b"b", b"c"):
        ring.write(payload)
    records, cons = take(ring, 0, limit=2)
    assert (records, cons) == ([b"a", b"b"], 32)
    assert take(ring, cons) == ([b"c"], 48)


def test_nothing_new_leaves_the_position() -> None:
    ring = Ring(start=40)
    assert take(ring, 40) == ([], 40)
