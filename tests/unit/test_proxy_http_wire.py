"""The proxy's HTTP framing on llhttp (membrane.proxy.http_wire): the rules h11 gave the proxy before,
each pinned, plus the HEAD / 100-continue / close-delimited paths through the handler."""

from __future__ import annotations

import asyncio

import pytest

from membrane.proxy.http_wire import (
    CHUNKED,
    CLOSED,
    MAX_HEAD,
    UNTIL_CLOSE,
    Data,
    EndOfMessage,
    Peer,
    ProtocolError,
    Request,
    Response,
)
from tests.unit.test_proxy_http import Harness, run


def parsed(role: str, data: bytes) -> list:
    p = Peer(role, None, None)  # type: ignore[arg-type]
    p.receive(data)
    return list(p.events)


def framed(peer: Peer, *events) -> bytes:
    peer.queue(*events)
    out = b"".join(peer.pending)
    peer.pending.clear()
    return out


def server_answering(request: bytes) -> Peer:
    p = Peer("server", None, None)  # type: ignore[arg-type]
    p.receive(request)
    p.request = p.events.popleft()
    return p


def test_pipelined_requests_wait_parsed_in_order():
    events = parsed("server", b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
    assert [type(e) for e in events] == [Request, EndOfMessage, Request, Data, EndOfMessage]
    assert (events[0].target, events[2].target, events[3].data) == (b"/a", b"/b", b"hi")


@pytest.mark.parametrize("data, reason", [
    (b"GET / HTTP/1.1\r\nX: y\r\n\r\n", "without Host"),
    (b"\x00\x01 garbage\r\n\r\n", "Invalid method"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * (MAX_HEAD + 10), "over"),
], ids=["no-host", "garbage", "huge-head"])
def test_bad_requests_raise(data, reason):
    with pytest.raises(ProtocolError, match=reason):
        parsed("server", data)


def test_a_chunked_request_stays_chunked_with_its_trailers():
    events = parsed("server", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n")
    assert events[0].framing == CHUNKED
    out = framed(Peer("client", None, None), *events)  # type: ignore[arg-type]
    assert out.endswith(b"\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n")
    assert out.startswith(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n")


def test_unknown_length_response_is_chunked_to_1_1_and_close_delimited_to_1_0():
    up = Peer("client", None, None)  # type: ignore[arg-type]
    up.receive(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nabc")
    head, body = list(up.events)
    assert head.framing == UNTIL_CLOSE and up._closed() is None  # end of stream ends the body
    end = up.events[-1]
    assert isinstance(end, EndOfMessage) and up.must_close
    to11 = server_answering(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    out = framed(to11, Response(200, [(b"Content-Type", b"text/plain")], b"OK", UNTIL_CLOSE), body, end)
    assert out == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    assert not to11.must_close
    to10 = server_answering(b"GET / HTTP/1.0\r\n\r\n")
    out = framed(to10, Response(200, [], b"OK", CHUNKED), body, end)
    assert out == b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nabc" and to10.must_close


def test_connection_close_on_either_side_ends_the_client_connection():
    asked = server_answering(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = framed(asked, Response(200, [(b"Content-Length", b"0")], b"OK"), EndOfMessage())
    assert b"\r\nconnection: close\r\n" in out and asked.must_close
    answered = server_answering(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    framed(answered, Response(200, [(b"Content-Length", b"0"), (b"Connection", b"close")], b"OK"), EndOfMessage())
    assert answered.must_close
    kept = server_answering(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    framed(kept, Response(200, [(b"Content-Length", b"0")], b"OK"), EndOfMessage())
    assert not kept.must_close


def test_interim_responses_pass_before_the_final_one():
    events = parsed("client", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
    assert [(type(e), getattr(e, "status_code", None)) for e in events] == [
        (Response, 100), (Response, 201), (Data, None), (EndOfMessage, None)]


def test_an_upgrade_ends_the_exchange_instead_of_waiting_on_the_upstream():
    events = parsed("client", b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nframes")
    assert [type(e) for e in events] == [Response, type(CLOSED)] and events[0].status_code == 101


def test_a_response_to_head_has_no_body_and_the_next_one_parses():
    up = Peer("client", None, None)  # type: ignore[arg-type]
    framed(up, Request(b"HEAD", b"/", [(b"Host", b"x")]))
    up.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
    assert [type(e) for e in up.events] == [Response, EndOfMessage]
    up.events.clear()
    framed(up, Request(b"GET", b"/", [(b"Host", b"x")]))
    up.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    assert [type(e) for e in up.events] == [Response, Data, EndOfMessage] and up.events[1].data == b"hello"


def test_a_peer_closing_mid_message_is_an_error_between_messages_is_not():
    p = Peer("server", None, None)  # type: ignore[arg-type]
    p.receive(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")
    with pytest.raises(ProtocolError, match="middle"):
        p._closed()
    q = Peer("server", None, None)  # type: ignore[arg-type]
    q.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert q._closed() is CLOSED


# ---- through the handler ----------------------------------------------------------------------------
async def _raw_upstream(answers: list[bytes]) -> asyncio.base_events.Server:
    """Answers each request head it sees with the next of ``answers`` (bytes as given)."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = b""
        while answers and (chunk := await reader.read(65536)):
            buf += chunk
            while b"\r\n\r\n" in buf and answers:
                _, buf = buf.split(b"\r\n\r\n", 1)
                writer.write(answers.pop(0))
                await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


def _through_proxy(answers: list[bytes], payload: bytes) -> bytes:
    async def main() -> bytes:
        up = await _raw_upstream(answers)
        px = await Harness([{}], up.sockets[0].getsockname()[1]).proxy()
        reader, writer = await asyncio.open_connection("127.0.0.1", px.sockets[0].getsockname()[1])
        writer.write(payload)
        got = b""
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            got += chunk
        writer.close()
        px.close()
        up.close()
        return got

    return run(main())


def test_head_then_get_on_one_keepalive_connection():
    got = _through_proxy([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                          b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"],
                         b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert got.count(b"HTTP/1.1 200 OK") == 2 and got.endswith(b"\r\n\r\nhello")


def test_100_continue_and_a_close_delimited_response_reach_the_client():
    got = _through_proxy([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nall of it"],
                         b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n"
                         b"Content-Length: 2\r\n\r\nhi")
    assert got.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert got.endswith(b"\r\n\r\n9\r\nall of it\r\n0\r\n\r\n")  # chunked to the HTTP/1.1 client
