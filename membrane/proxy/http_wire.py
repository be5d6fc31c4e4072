"""HTTP/1.1 messages on a stream for the proxy: llhttp (``httptools``) parses, this module frames.

h11 did this before and cost ~55 µs of Python per proxied exchange against ~4 µs here (bench/README,
issue 12). The framing rules kept from h11, so the handler behaves as it did:

- keep-alive: a request with ``Connection: close`` or from an HTTP/1.0 client, or a response carrying
  ``Connection: close``, ends the client connection after the response (``Connection: close`` is added);
- a response of unknown length (chunked or close-delimited) goes to an HTTP/1.1 client chunked, to an
  HTTP/1.0 client close-delimited; a chunked request stays chunked, trailers included;
- interim (1xx) responses pass before the final one; a response to HEAD, 204 and 304 carry no body;
- a head over :data:`MAX_HEAD` bytes, a malformed message, an HTTP/1.1 request without Host, or a peer
  closing mid-message raise :class:`ProtocolError`;
- pipelined requests wait, parsed, in the peer's queue until the handler asks for them.

Sent messages are queued and written in one piece when the proxy is about to wait (see
:meth:`Peer.next_event`): a response's head, body and end leave in one ``send``.

I/O is protocol-level (:class:`_Wire`): a peer takes its connection's transport over from the asyncio
streams it was given, bytes are parsed as they arrive (no StreamReader buffer, no coroutine per read),
and the handler's coroutine is woken only when an event is ready. One idle timer per peer, re-armed
only when it fires, replaces a timeout context per read. (bench/README, issue 12, l7io.)
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httptools

from membrane.proxy.protocol_io import Stepper, Wire

MAX_HEAD = 64 * 1024
IDLE_TIMEOUT = 300.0
LENGTH, CHUNKED, UNTIL_CLOSE, NO_BODY = "length", "chunked", "until-close", "none"


class ProtocolError(Exception):
    """The peer sent something that is not HTTP/1.x, or stopped in the middle of a message."""


@dataclass(slots=True)
class Request:
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    http_version: str = "1.1"
    keep_alive: bool = True
    framing: str = NO_BODY


@dataclass(slots=True)
class Response:
    """A final (≥ 200) or interim (1xx) response head."""

    status_code: int
    headers: list[tuple[bytes, bytes]]
    reason: bytes = b""
    framing: str = LENGTH


@dataclass(slots=True)
class Data:
    data: bytes


@dataclass(slots=True)
class EndOfMessage:
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)


class ConnectionClosed:
    """The peer closed its side between messages."""


CLOSED = ConnectionClosed()


def _has_token(headers: list[tuple[bytes, bytes]], name: bytes, token: bytes) -> bool:
    """``token`` among the comma-separated values of the ``name`` headers (no set built: one pass)."""
    for k, v in headers:
        if k.lower() == name and token in v.lower() and token in {t.strip() for t in v.lower().split(b",")}:
            return True
    return False


def _without(headers: list[tuple[bytes, bytes]], *names: bytes) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in headers if k.lower() not in names]


def _head(first: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join([first, *(k + b": " + v + b"\r\n" for k, v in headers), b"\r\n"])


class Peer:
    """One side of the proxy: ``server`` (the client's connection: requests in, responses out) or
    ``client`` (the upstream's: requests out, responses in)."""

    def __init__(self, role: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 stepper: Stepper | None = None) -> None:
        self.role, self.reader, self.writer = role, reader, writer
        self.events: deque[Any] = deque()
        self.pending: list[bytes] = []
        self.must_close = False  # after the current exchange
        self.responding = False  # server: a final response's head went out, its end not yet
        self.request: Request | None = None  # server: the request being answered; client: the one sent
        self._out = NO_BODY  # framing of the message being sent
        self._head_method = False  # client: the request sent was HEAD (its response has no body)
        self._head_buf, self._head_done = b"", False
        self._framing_in = NO_BODY  # client: framing of the response being received
        self._upgraded = False
        self._new_parser()
        self.wire: Wire | None = None
        if writer is not None:  # (the framing tests make peers without a connection)
            self.wire = Wire(self._feed, IDLE_TIMEOUT, stepper)
            self.wire.take_over(reader, writer)

    # ---- receiving -------------------------------------------------------------------------------
    def _new_parser(self) -> None:
        self._parser = (httptools.HttpRequestParser if self.role == "server" else httptools.HttpResponseParser)(self)
        self._in_head = False
        self._in_body = False
        self._head_size = 0

    def on_message_begin(self) -> None:
        self._in_head, self._head_size = True, 0
        self._url, self._reason = b"", b""
        self._headers: list[tuple[bytes, bytes]] = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        p, headers = self._parser, self._headers
        self._in_head = False
        chunked = has_length = has_host = False
        for k, v in headers:  # one pass over the head for what framing needs
            name = k.lower()
            if name == b"content-length":
                has_length = True
            elif name == b"host":
                has_host = True
            elif name == b"transfer-encoding" and not chunked:
                chunked = b"chunked" in {t.strip() for t in v.lower().split(b",")}
        if self.role == "server":
            version = p.get_http_version()
            if version == "1.1" and not has_host:
                raise ProtocolError("HTTP/1.1 request without Host")
            framing = CHUNKED if chunked else LENGTH if has_length else NO_BODY
            req = Request(p.get_method(), self._url, headers, version, p.should_keep_alive(), framing)
            self.events.append(req)
        else:
            code = p.get_status_code()
            if code < 200 or code in (204, 304) or self._head_method:
                framing = NO_BODY
            else:
                framing = CHUNKED if chunked else LENGTH if has_length else UNTIL_CLOSE
            if code >= 200 and not p.should_keep_alive():
                self.must_close = True
            self._framing_in = framing
            self.events.append(Response(code, headers, self._reason, framing))
            if framing == NO_BODY and code >= 200 and self._head_method:
                self.events.append(EndOfMessage())
                self._head_done = True
        self._in_body = True
        self._headers = []  # what follows a chunked body is its trailers

    def on_body(self, body: bytes) -> None:
        self.events.append(Data(body))

    def on_message_complete(self) -> None:
        self._in_body = False
        if self.role == "client" and self._parser.get_status_code() < 200:
            return  # an interim response: no end event, the final one follows
        if self.role == "client" and self._head_method:
            return  # already ended at its head
        self.events.append(EndOfMessage(self._headers))

    def _feed(self, data: bytes) -> int:
        if not self._upgraded:
            self.receive(data)
        return len(self.events)

    def receive(self, data: bytes) -> None:
        if self.role == "client" and self._head_method:
            data = self._receive_head_only(data)
            if not data:
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.must_close = self._upgraded = True  # CONNECT / Upgrade / 101: not proxied past this exchange
            if self.role == "client":
                self.events.append(CLOSED)  # after a 101 the upstream speaks something else: end here
        except httptools.HttpParserError as exc:
            cause = exc.__cause__ or exc.__context__
            raise ProtocolError(str(cause if isinstance(cause, ProtocolError) else exc)) from exc
        if self._in_head:
            self._head_size += len(data)
            if self._head_size > MAX_HEAD:
                raise ProtocolError(f"message head over {MAX_HEAD} bytes")

    def _receive_head_only(self, data: bytes) -> bytes:
        """A response to HEAD: llhttp cannot be told it has no body, so it gets the bytes up to the end of
        the final response's head, and a fresh parser the rest."""
        self._head_buf += data
        self._head_done = False
        while not self._head_done:
            end = self._head_buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head_buf) > MAX_HEAD:
                    raise ProtocolError(f"message head over {MAX_HEAD} bytes")
                return b""
            head, self._head_buf = self._head_buf[:end + 4], self._head_buf[end + 4:]
            try:
                self._parser.feed_data(head)
            except httptools.HttpParserError as exc:
                raise ProtocolError(str(exc)) from exc
        rest, self._head_buf, self._head_method = self._head_buf, b"", False
        self._new_parser()
        return rest

    def _closed(self) -> Any:
        """End of stream: the end of a close-delimited response (``None``: its event is queued), the peer
        gone between messages (:data:`CLOSED`), or an error in the middle of one."""
        if self._in_body and self._framing_in == UNTIL_CLOSE:
            self._in_body, self.must_close = False, True
            self.events.append(EndOfMessage())
            return None
        if self._in_head or self._in_body:
            raise ProtocolError("peer closed in the middle of a message")
        return CLOSED

    async def next_event(self, other: Peer | None = None) -> Any:
        """The next event; before waiting for bytes, what this side and ``other`` queued is written."""
        wire = self.wire
        assert wire is not None
        while True:
            if wire.error is not None:
                raise wire.error
            events = self.events
            if events:
                event = events.popleft()
                if wire.reading_paused:
                    wire.consumed(len(events))
                if type(event) is Request:
                    self.request = event  # the one the next response answers (pipelined ones wait)
                return event
            if wire.eof:
                closed = self._closed()
                if closed is not None:
                    return closed
                continue
            # a flush may wait for the transport to drain, and bytes may arrive meanwhile: look again
            # before waiting (waiting on events already queued stalled a large response to a slow client)
            if self.pending:
                await self.flush()
                continue
            if other is not None and other.pending:
                await other.flush()
                continue
            await wire.wait()

    # ---- sending ---------------------------------------------------------------------------------
    def queue(self, *events: Any) -> None:
        for event in events:
            data = self._frame(event)
            if data:
                self.pending.append(data)

    def _frame(self, event: Any) -> bytes:
        kind = type(event)
        if kind is Data:
            out = self._out
            if not event.data or out == NO_BODY:
                return b""
            if out == CHUNKED:
                return b"%x\r\n%b\r\n" % (len(event.data), event.data)
            return event.data
        if kind is EndOfMessage:
            out, self._out, self.responding = self._out, NO_BODY, False
            if out == CHUNKED:
                return b"0\r\n" + _head(b"", event.trailers)
            if out == UNTIL_CLOSE:
                self.must_close = True
            return b""
        if kind is Request:
            self.request, self._head_method = event, event.method == b"HEAD"
            self._out = event.framing
            if not event.keep_alive:
                self.must_close = True
            return _head(b"%b %b HTTP/1.1\r\n" % (event.method, event.target), event.headers)
        if kind is Response:
            return self._response_head(event)
        raise TypeError(f"not an HTTP event: {event!r}")

    def _response_head(self, res: Response) -> bytes:
        headers, first = res.headers, b"HTTP/1.1 %d %b\r\n" % (res.status_code, res.reason)
        if res.status_code < 200:
            return _head(first, headers)
        req = self.request
        client11 = req is not None and req.http_version == "1.1"
        keep = req is not None and req.keep_alive and not _has_token(headers, b"connection", b"close")
        self.responding, self._out = True, res.framing
        if res.framing in (CHUNKED, UNTIL_CLOSE) or (req is not None and req.method == b"HEAD"
                                                     and _has_token(headers, b"transfer-encoding", b"chunked")):
            headers = _without(headers, b"content-length", b"transfer-encoding")
            if client11:
                headers.append((b"transfer-encoding", b"chunked"))
                self._out = CHUNKED if res.framing != NO_BODY else NO_BODY
            else:
                keep = False
                self._out = UNTIL_CLOSE if res.framing != NO_BODY else NO_BODY
        if req is not None and req.method == b"HEAD":
            self._out = NO_BODY
        if not keep:
            self.must_close = True
            if not _has_token(headers, b"connection", b"close"):
                headers = [*_without(headers, b"connection"), (b"connection", b"close")]
        return _head(first, headers)

    async def flush(self) -> None:
        if self.pending:
            data = self.pending[0] if len(self.pending) == 1 else b"".join(self.pending)
            self.pending.clear()
            wire = self.wire
            assert wire is not None
            wire.write(self.writer, data)
            if wire.blocked:
                await wire.drain()

    async def send(self, *events: Any) -> None:
        self.queue(*events)
        await self.flush()
