"""A proxied connection's I/O at protocol level: :class:`Wire` takes a transport over from the asyncio
streams it came with, hands arriving bytes straight to a parser, and wakes the one coroutine waiting
on it only when the parser has something for it.

Why (bench/README, issue 12, l7io): with ``StreamReader.read`` each chunk went through the reader's
buffer (a copy in, a copy out), a future per read, and a timeout context per read (a timer pushed on
and cancelled off the loop's heap); on a keep-alive proxy that is two waits per exchange. Here a
chunk is parsed in ``data_received``; the idle timeout is one timer per connection, re-armed only
when it fires; writes go to the transport at once and wait only while the transport says it is full.

:class:`Stepper` (bench/README, issue 12, l7uv) runs a handler's coroutine without a Task of its own:
a wire it waits on resumes it right inside ``data_received``, so a request is forwarded (and a
response answered) in the loop iteration that read it, instead of through a future's callback, a
Task wake-up and one more loop iteration (with its ``epoll_wait``) per direction.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine, Generator
from typing import Any

PAUSE_EVENTS = 64  # parsed events queued unread: stop reading the socket (the peer waits in TCP)
RESUME_EVENTS = 16


_PARKED = object()  # what a waiting wire yields to its Stepper: resumed by the wire, not by a future


class _Park:
    def __await__(self) -> Generator[Any, None, None]:
        yield _PARKED


_PARK = _Park()


class Stepper:
    """Drives one coroutine in place of a Task: it is stepped at once when a :class:`Wire` made with
    ``stepper=self`` has something for it (from the wire's protocol callbacks), or when an asyncio
    future it awaits is done (through the future's callback, as a Task would). :attr:`done` holds its
    outcome. The coroutine may await wires and futures only; what needs a Task of its own (a timeout
    context, ``wait_for`` on Python ≥ 3.12) must be wrapped in one (``loop.create_task``) and awaited."""

    __slots__ = ("coro", "done", "_loop")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self._loop.create_future()
        self.coro: Coroutine[Any, Any, None] | None = None

    def start(self, coro: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
        self.coro = coro
        self.step()
        return self.done

    def close(self) -> None:
        coro, self.coro = self.coro, None
        if coro is not None:
            coro.close()

    def step(self, exc: BaseException | None = None) -> None:
        coro = self.coro
        if coro is None:
            return
        try:
            out = coro.send(None) if exc is None else coro.throw(exc)
        except StopIteration:
            self.coro = None
            if not self.done.done():
                self.done.set_result(None)
            return
        except BaseException as err:  # noqa: BLE001 — handed to whoever awaits `done`, as a Task would
            self.coro = None
            if not self.done.done():
                self.done.set_exception(err)
            return
        if out is _PARKED:
            return  # a wire resumes it
        if out is None:  # a bare yield (asyncio.sleep(0)): the next iteration
            self._loop.call_soon(self.step)
        elif getattr(out, "_asyncio_future_blocking", False):
            out._asyncio_future_blocking = False  # noqa: SLF001 — as Task does with what it is given
            out.add_done_callback(self._wakeup)
        else:
            self._loop.call_soon(self.step, RuntimeError(f"a stepped coroutine awaited {out!r}"))

    def _wakeup(self, _fut: asyncio.Future[Any]) -> None:
        self.step()  # the coroutine reads the future's result (or exception) itself


class Wire(asyncio.Protocol):
    """``feed(data)`` parses ``data`` and returns how many parsed events wait unread; an exception it
    raises is kept in :attr:`error` (reading stops) and raised to the waiter. With a ``stepper``,
    :meth:`wait` is for a coroutine that stepper drives, and the wire resumes it directly."""

    def __init__(self, feed: Callable[[bytes], int], idle_timeout: float, stepper: Stepper | None = None) -> None:
        self.feed = feed
        self.stepper = stepper
        self._parked = False
        self.idle_timeout = idle_timeout
        self.transport: asyncio.Transport | None = None
        self.error: BaseException | None = None
        self.eof = False  # the peer closed its sending side (or the connection is gone)
        self.lost = False
        self.reading_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._wait_start = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._drained: asyncio.Future[None] | None = None  # set while the transport is full
        self._loop = asyncio.get_running_loop()
        self._fd = -1  # the socket's, once taken over: see write

    def take_over(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Become the protocol of ``writer``'s transport; what ``reader`` had buffered is fed first.
        (Reads ``reader``'s buffer and state directly: StreamReader has no public way to hand them on.)"""
        transport = writer.transport
        pending = bytes(reader._buffer)  # noqa: SLF001
        reader._buffer.clear()  # noqa: SLF001
        error, eof = reader.exception(), reader._eof  # noqa: SLF001
        transport.set_protocol(self)
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        self._fd = sock.fileno() if sock is not None else -1
        if reader._paused:  # noqa: SLF001 — the reader had stopped reading at its limit
            reader._paused = False  # noqa: SLF001
            transport.resume_reading()
        if pending:
            self.data_received(pending)
        if error is not None and self.error is None:
            self.error = error
        if eof or transport.is_closing():
            self.eof = True

    # ---- asyncio.Protocol ----------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.error is not None:
            return
        try:
            queued = self.feed(data)
        except Exception as exc:  # malformed input: the waiter gets it; nothing more is read
            self.error = exc
            self._pause_reading()
            self._wake()
            return
        if queued:
            if queued > PAUSE_EVENTS:
                self._pause_reading()
            self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return True  # keep the transport: a half-closed client still gets its response

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.eof = True
        if exc is not None and self.error is None:
            self.error = exc
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake()
        self._wake_writer()

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        self._wake_writer()

    # ---- for the peer --------------------------------------------------------------------------
    def consumed(self, queued: int) -> None:
        """The reader took an event; ``queued`` remain."""
        if self.reading_paused and queued <= RESUME_EVENTS and self.error is None and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()

    async def wait(self) -> None:
        """Until bytes were parsed into events, the peer closed, or an error; TimeoutError after
        ``idle_timeout`` seconds of nothing."""
        if self.error is not None or self.eof:
            return
        loop = self._loop
        self._wait_start = loop.time()
        if self._timer is None:
            self._timer = loop.call_at(self._wait_start + self.idle_timeout, self._idle)
        if self.stepper is not None:
            self._parked = True
            try:
                await _PARK
            finally:
                self._parked = False
            return
        waiter = self._waiter = loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        """To the socket at once when the transport holds nothing unsent (``os.write``, the GIL released:
        a send runs the receiver's datapath, veth, BPF, TPROXY, in this thread; the stdlib transport's
        send releases it too, uvloop's does not). What does not fit, and every error, goes to the
        transport (it buffers, or reports the error as its own)."""
        if self.lost:
            raise ConnectionResetError("Connection lost")
        if self._fd >= 0 and not self.transport.get_write_buffer_size():  # type: ignore[union-attr]
            try:
                sent = os.write(self._fd, data)
            except OSError:  # full (EAGAIN) or broken: the transport's write deals with it
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        writer.write(data)  # through the writer: it stays the one place a connection's bytes go out

    @property
    def blocked(self) -> bool:
        """A write must wait (the transport is full) or fail (the connection is gone)."""
        return self.lost or self._drained is not None

    async def drain(self) -> None:
        """Only while the transport's buffer is over its high-water mark (the kernel's is full)."""
        while self._drained is not None:
            await self._drained
        if self.lost:
            raise ConnectionResetError("Connection lost")

    def _idle(self) -> None:
        self._timer = None
        waiter = self._waiter
        if not self._parked and (waiter is None or waiter.done()):
            return  # re-armed by the next wait
        due = self._wait_start + self.idle_timeout
        if self._loop.time() < due - 0.001:
            self._timer = self._loop.call_at(due, self._idle)
        elif self._parked:
            self._parked = False
            self.stepper.step(TimeoutError())  # type: ignore[union-attr]
        else:
            waiter.set_exception(TimeoutError())  # type: ignore[union-attr]

    def _wake(self) -> None:
        if self._parked:
            self._parked = False
            self.stepper.step()  # type: ignore[union-attr]
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_writer(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and not self.transport.is_closing():
            self.reading_paused = True
            self.transport.pause_reading()

    def close_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
