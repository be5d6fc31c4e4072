"""RingBufferReader: a pinned BPF ring buffer read through libbpf in a thread, without polling.

libbpf's ``ring_buffer__new`` maps the ring buffer and calls back for each record; the thread
sleeps in epoll on libbpf's epoll fd (ready when the kernel signals new data) together with a
stop pipe, so it neither spins nor wakes up on a timer. Records reach ``on_record`` as bytes,
on the reader thread, in the order the kernel committed them.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from ctypes import c_int, c_size_t, c_void_p

from membrane.datapath.bpf.errors import BpfError
from membrane.datapath.bpf.libbpf import last_errno, lib
from membrane.datapath.bpf.syscalls import close_fd, map_info, obj_get

BPF_MAP_TYPE_RINGBUF = 27
BATCH_MAX = 4096  # records handed to on_batch at most at once
SAMPLE_FN = ctypes.CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)
# name -> (restype, argtypes); set on first use (libbpf.py's table has no ring buffer calls)
_PROTOTYPES: dict[str, tuple[object, list[object]]] = {
    "ring_buffer__new": (c_void_p, [c_int, SAMPLE_FN, c_void_p, c_void_p]),
    "ring_buffer__epoll_fd": (c_int, [c_void_p]),
    "ring_buffer__consume": (c_int, [c_void_p]),
    "ring_buffer__free": (None, [c_void_p]),
}
log = logging.getLogger(__name__)


def _ringbuf_lib() -> ctypes.CDLL:
    handle = lib()
    for name, (restype, argtypes) in _PROTOTYPES.items():
        func = getattr(handle, name)
        func.restype = restype
        func.argtypes = argtypes
    return handle


def open_ringbuf(path: str) -> int:
    """Open a pinned ring buffer map; raise BpfError if it is missing or another map type."""
    fd = obj_get(path)
    try:
        info = map_info(fd)
        if info.type != BPF_MAP_TYPE_RINGBUF:
            raise BpfError(errno.EINVAL, f"pinned map {path}", f"map type {info.type}, a ring buffer is expected")
    except BaseException:
        close_fd(fd)
        raise
    return fd


class RingBufferReader:
    """``RingBufferReader(path, on_record).start()`` … ``stop()``.

    ``on_record(raw)`` runs on the reader thread; an exception there is logged and counted in
    ``callback_errors`` and reading goes on. ``stop()`` drains what is already committed, then
    joins the thread and releases the ring buffer.
    """

    def __init__(self, path: str, on_record: Callable[[bytes], None],
                 on_batch: Callable[[list[bytes]], None] | None = None, linger: float = 0.0) -> None:
        """``on_batch``: given, records are collected and handed over as one list per wake-up
        (what one consume call read) instead of one ``on_record`` call each. ``linger``: seconds
        to wait after a wake-up before reading, so that records arriving meanwhile join the batch
        (the kernel wakes the reader for the first record after it has caught up)."""
        self.path = path
        self._linger = linger
        self._on_record = on_record
        self._on_batch = on_batch
        self._batch: list[bytes] = []
        self._callback = SAMPLE_FN(self._sample)  # libbpf keeps the pointer: keep the object alive
        self._fd: int | None = None
        self._rb: int | None = None
        self._thread: threading.Thread | None = None
        self._stop_r: int | None = None
        self._stop_w: int | None = None
        self.records = 0
        self.callback_errors = 0
        self.error: BpfError | None = None  # why the thread ended early, if it did

    def _sample(self, _ctx: int, data: int, size: int) -> int:
        self.records += 1
        if self._on_batch is not None:
            self._batch.append(ctypes.string_at(data, size))
            # libbpf consumes while records keep coming: a full batch stops it (this record is
            # consumed already) so that a flood is handed over in bounded batches
            return -errno.EAGAIN if len(self._batch) >= BATCH_MAX else 0
        try:
            self._on_record(ctypes.string_at(data, size))
        except Exception:  # noqa: BLE001 - a consumer bug must not stop the reader
            self.callback_errors += 1
            log.exception("ring buffer %s: record handler failed", self.path)
        return 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            raise BpfError(errno.EALREADY, f"ring buffer {self.path}", "reader already started")
        handle = _ringbuf_lib()
        self._fd = open_ringbuf(self.path)
        rb = handle.ring_buffer__new(self._fd, self._callback, None, None)
        if not rb:
            err = last_errno()
            self._release()
            raise BpfError(err, f"ring buffer {self.path}: ring_buffer__new")
        self._rb = rb
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name=f"ringbuf:{os.path.basename(self.path)}", daemon=True)
        self._thread.start()

    def _consume(self) -> None:
        while True:
            ret = _ringbuf_lib().ring_buffer__consume(self._rb)
            if self._batch:
                batch, self._batch = self._batch, []
                try:
                    self._on_batch(batch)  # type: ignore[misc]
                except Exception:  # noqa: BLE001 - a consumer bug must not stop the reader
                    self.callback_errors += 1
                    log.exception("ring buffer %s: batch handler failed", self.path)
            if ret != -errno.EAGAIN or self._on_batch is None:
                break
        if ret < 0 and ret != -errno.EINTR:
            raise BpfError(-ret, f"ring buffer {self.path}: consume")

    def _run(self) -> None:
        rb_epoll = _ringbuf_lib().ring_buffer__epoll_fd(self._rb)
        poller = select.epoll()
        try:
            poller.register(rb_epoll, select.EPOLLIN)
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
        if self._rb is not None:
            _ringbuf_lib().ring_buffer__free(self._rb)
            self._rb = None
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
