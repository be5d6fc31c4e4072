"""The HTTP proxy's protocol-level I/O (membrane.proxy.protocol_io): the take-over from asyncio streams
keeps what the stream had buffered, reading stops while parsed events pile up, and the idle timeout
still ends a silent connection."""

from __future__ import annotations

import asyncio

import pytest

from membrane.proxy import http_wire
from membrane.proxy.http_wire import CLOSED, EndOfMessage, Peer, Request
from membrane.proxy.protocol_io import PAUSE_EVENTS, Stepper, Wire

REQ = b"GET /v1 HTTP/1.1\r\nHost: x\r\n\r\n"


async def _connected(on_accept) -> tuple[asyncio.StreamWriter, asyncio.base_events.Server]:
    server = await asyncio.start_server(on_accept, "127.0.0.1", 0)
    _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    return writer, server


def test_bytes_the_stream_buffered_before_the_take_over_are_parsed_first():
    async def main() -> list:
        got: list = []
        done = asyncio.Event()

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(0.2)  # both requests and the close now sit in the stream's buffer
            peer = Peer("server", reader, writer)
            for _ in range(5):
                got.append(await peer.next_event())
            writer.close()
            done.set()

        client, server = await _connected(accepted)
        client.write(REQ + REQ)
        await client.drain()
        client.close()
        await asyncio.wait_for(done.wait(), 5)
        server.close()
        return got

    got = asyncio.run(main())
    assert [type(e) for e in got] == [Request, EndOfMessage, Request, EndOfMessage, type(CLOSED)]


def test_reading_pauses_while_parsed_events_pile_up_and_resumes_when_read():
    async def main() -> tuple[bool, bool, int]:
        result: list = []
        done = asyncio.Event()

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = Peer("server", reader, writer)
            await asyncio.sleep(0.3)  # all pipelined requests arrive, none read
            assert peer.wire is not None
            paused = peer.wire.reading_paused
            requests = 0
            while requests < 100:
                if type(await peer.next_event()) is Request:
                    requests += 1
            result.extend([paused, peer.wire.reading_paused, requests])
            writer.close()
            done.set()

        client, server = await _connected(accepted)
        client.write(REQ * 100)  # 200 events, over PAUSE_EVENTS
        await client.drain()
        await asyncio.wait_for(done.wait(), 5)
        client.close()
        server.close()
        return tuple(result)  # type: ignore[return-value]

    assert PAUSE_EVENTS < 200
    paused, paused_after, requests = asyncio.run(main())
    assert paused and not paused_after and requests == 100


def test_a_silent_connection_times_out(monkeypatch):
    monkeypatch.setattr(http_wire, "IDLE_TIMEOUT", 0.2)

    async def main() -> float:
        outcome: list = []
        done = asyncio.Event()

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = Peer("server", reader, writer)
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(TimeoutError):
                await peer.next_event()
            outcome.append(loop.time() - start)
            writer.close()
            done.set()

        client, server = await _connected(accepted)
        await asyncio.wait_for(done.wait(), 5)
        client.close()
        server.close()
        return outcome[0]

    assert 0.15 <= asyncio.run(main()) < 2


# ---- Stepper: a coroutine resumed by its wire, inside the protocol callback -------------------


def test_a_stepped_coroutine_runs_inside_the_callback_that_fed_its_wire():
    async def main() -> tuple[list, list]:
        log: list = []
        stepper = Stepper()
        wire = Wire(lambda data: len(data), 300.0, stepper)

        async def exchanges() -> None:
            await wire.wait()
            log.append("woke")
            await wire.wait()
            log.append("woke again")

        stepper.start(exchanges())
        before = list(log)
        wire.data_received(b"x")  # no loop iteration between the bytes and the coroutine
        during = list(log)
        wire.data_received(b"y")
        await stepper.done
        return before + ["|"] + during, log

    first, log = asyncio.run(main())
    assert first == ["|", "woke"]
    assert log == ["woke", "woke again"]


def test_a_stepped_coroutine_awaits_futures_and_tasks_and_its_errors_reach_done():
    async def main() -> tuple[list, BaseException | None]:
        loop = asyncio.get_running_loop()
        got: list = []
        stepper = Stepper()
        fut = loop.create_future()
        loop.call_later(0.01, fut.set_result, 7)

        async def in_a_task() -> int:
            await asyncio.sleep(0.01)
            return 8

        async def exchanges() -> None:
            got.append(await fut)
            got.append(await loop.create_task(in_a_task()))
            await asyncio.sleep(0)
            raise ValueError("boom")

        try:
            await stepper.start(exchanges())
        except ValueError as exc:
            return got, exc
        return got, None

    got, exc = asyncio.run(main())
    assert got == [7, 8] and isinstance(exc, ValueError)


def test_a_stepped_wait_times_out_and_a_closed_stepper_runs_the_cleanup():
    async def main() -> tuple[float, list]:
        loop = asyncio.get_running_loop()
        stepper = Stepper()
        wire = Wire(lambda data: len(data), 0.2, stepper)
        start = loop.time()
        with pytest.raises(TimeoutError):
            await stepper.start(wire.wait())
        waited = loop.time() - start
        cleaned: list = []
        other = Stepper()
        parked = Wire(lambda data: len(data), 300.0, other)

        async def held() -> None:
            try:
                await parked.wait()
            finally:
                cleaned.append("finally")

        other.start(held())
        other.close()  # as handle_http does when its task is cancelled
        parked.data_received(b"late")  # nothing left to resume
        return waited, cleaned

    waited, cleaned = asyncio.run(main())
    assert 0.15 <= waited < 2
    assert cleaned == ["finally"]
