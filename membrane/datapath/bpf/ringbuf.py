"""RingBufferReader: a pinned BPF ring buffer read through its memory mapping in a thread, without polling.

The ring buffer is read the way libbpf's ``ring_buffer__consume`` reads it, without calling back
into Python for each record: the consumer page is mapped read-write, the producer page and the data
area read-only (the kernel maps the data area twice, so a record that wraps around the end reads
contiguously). A wake-up walks the record headers from the consumer position to the producer
position, copies each committed record out as ``bytes`` (one slice of the mapping), stops at the
first record still being written, and moves the consumer position past what it took. The thread
sleeps in epoll on the map's fd (ready when the kernel signals new data) together with a stop pipe,
so it neither spins nor wakes up on a timer. Records reach ``on_record`` (or ``on_batch``) on the
reader thread, in the order the kernel committed them.

The positions are read and written as single aligned 8-byte loads and stores; on x86-64 (the only
target the BPF objects are built for) these are the acquire loads and release stores the kernel's
protocol asks for, and the record header is read before its data.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import select
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from membrane.datapath.bpf.errors import BpfError
from membrane.datapath.bpf.syscalls import close_fd, map_info, obj_get

BPF_MAP_TYPE_RINGBUF = 27
BATCH_MAX = 4096  # records handed to on_batch at most at once
# struct bpf_ringbuf_hdr (kernel/bpf/ringbuf.c): u32 len with these two flags, u32 page offset
BUSY_BIT = 1 << 31  # reserved, not committed yet
DISCARD_BIT = 1 << 30  # committed as discarded: skip it
HEADER_SIZE = 8
_LEN_MASK = ~(BUSY_BIT | DISCARD_BIT) & 0xFFFFFFFF
_POS = struct.Struct("=Q")  # native layout: one aligned 8-byte load or store (memcpy), never torn
_LEN = struct.Struct("=I")
PAGE = mmap.PAGESIZE
log = logging.getLogger(__name__)


def open_ringbuf(path: str) -> tuple[int, int]:
    """Open a pinned ring buffer map: (fd, data size); raise BpfError if it is missing or another map type."""
    fd = obj_get(path)
    try:
        info = map_info(fd)
        if info.type != BPF_MAP_TYPE_RINGBUF:
            raise BpfError(errno.EINVAL, f"pinned map {path}", f"map type {info.type}, a ring buffer is expected")
    except BaseException:
        close_fd(fd)
        raise
    return fd, info.max_entries


def take_records(data: Any, base: int, mask: int, cons: int, prod: int, limit: int) -> tuple[list[bytes], int]:
    """The committed records between positions ``cons`` and ``prod`` of a ring whose data area starts
    at ``data[base]`` (mapped twice: ``mask + 1`` bytes, then the same again), at most ``limit``;
    returns them and the consumer position after them. Stops at the first record still busy;
    discarded records are skipped (and consumed)."""
    out: list[bytes] = []
    append = out.append
    unpack = _LEN.unpack_from
    while cons < prod and limit:
        at = base + (cons & mask)
        n = unpack(data, at)[0]
        if n & BUSY_BIT:
            break
        size = n & _LEN_MASK
        if not n & DISCARD_BIT:
            append(data[at + HEADER_SIZE : at + HEADER_SIZE + size])
            limit -= 1
        cons += (size + HEADER_SIZE + 7) & ~7
    return out, cons


class RingBufferReader:
    """``RingBufferReader(path, on_record).start()`` … ``stop()``.

    ``on_record(raw)`` runs on the reader thread; an exception there is logged and counted in
    ``callback_errors`` and reading goes on. ``stop()`` drains what is already committed, then
    joins the thread and releases the ring buffer.
    """

    def __init__(self, path: str, on_record: Callable[[bytes], None],
                 on_batch: Callable[[list[bytes]], None] | None = None, linger: float = 0.0) -> None:
        """``on_batch``: given, records are handed over as one list per wake-up (at most BATCH_MAX
        each) instead of one ``on_record`` call each. ``linger``: seconds to wait after a wake-up
        before reading, so that records arriving meanwhile join the batch (the kernel wakes the
        reader for the first record after it has caught up)."""
        self.path = path
        self._linger = linger
        self._on_record = on_record
        self._on_batch = on_batch
        self._fd: int | None = None
        self._consumer: mmap.mmap | None = None  # the consumer page (read-write)
        self._producer: mmap.mmap | None = None  # the producer page, then the data area twice
        self._mask = 0
        self._cons = 0
        self._thread: threading.Thread | None = None
        self._stop_r: int | None = None
        self._stop_w: int | None = None
        self.records = 0
        self.callback_errors = 0
        self.error: BpfError | None = None  # why the thread ended early, if it did

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            raise BpfError(errno.EALREADY, f"ring buffer {self.path}", "reader already started")
        self._fd, size = open_ringbuf(self.path)
        try:
            self._consumer = mmap.mmap(self._fd, PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            self._producer = mmap.mmap(self._fd, PAGE + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=PAGE)
        except OSError as exc:
            self._release()
            raise BpfError(exc.errno or errno.EIO, f"ring buffer {self.path}: mmap") from None
        self._mask = size - 1
        self._cons = _POS.unpack_from(self._consumer, 0)[0]
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name=f"ringbuf:{os.path.basename(self.path)}", daemon=True)
        self._thread.start()

    def _consume(self) -> None:
        """Read what was written when called, handing records over as they are taken (what comes
        later wakes epoll again: the map's fd stays ready while the ring holds data)."""
        consumer, producer = self._consumer, self._producer
        assert consumer is not None and producer is not None
        prod = _POS.unpack_from(producer, 0)[0]
        while True:
            records, cons = take_records(producer, PAGE, self._mask, self._cons, prod, BATCH_MAX)
            if cons == self._cons:
                return
            self._cons = cons
            _POS.pack_into(consumer, 0, cons)  # the kernel may reuse the space while they are decoded
            if records:
                self.records += len(records)
                self._deliver(records)

    def _deliver(self, records: list[bytes]) -> None:
        if self._on_batch is not None:
            try:
                self._on_batch(records)
            except Exception:  # noqa: BLE001 - a consumer bug must not stop the reader
                self.callback_errors += 1
                log.exception("ring buffer %s: batch handler failed", self.path)
            return
        for raw in records:
            try:
                self._on_record(raw)
            except Exception:  # noqa: BLE001 - a consumer bug must not stop the reader
                self.callback_errors += 1
                log.exception("ring buffer %s: record handler failed", self.path)

    def _run(self) -> None:
        assert self._fd is not None and self._stop_r is not None
        poller = select.epoll()
        try:
            poller.register(self._fd, select.EPOLLIN)
            poller.register(self._stop_r, select.EPOLLIN)
            while True:
                ready = {fd for fd, _mask in poller.poll()}
                if self._linger and self._stop_r not in ready:
                    time.sleep(self._linger)
                self._consume()
                if self._stop_r in ready:
                    return
        except BpfError as exc:
            self.error = exc
            log.error("%s", exc)
        finally:
            poller.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Drain, stop the thread and release the ring buffer (idempotent)."""
        if self._thread is not None and self._stop_w is not None:
            os.write(self._stop_w, b"x")
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise BpfError(errno.ETIMEDOUT, f"ring buffer {self.path}", "reader thread did not stop")
        self._thread = None
        self._release()

    def _release(self) -> None:
        for mapping in (self._consumer, self._producer):
            if mapping is not None:
                mapping.close()
        self._consumer = self._producer = None
        if self._fd is not None:
            close_fd(self._fd)
            self._fd = None
        for fd in (self._stop_r, self._stop_w):
            if fd is not None:
                os.close(fd)
        self._stop_r = self._stop_w = None

    def __enter__(self) -> RingBufferReader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
