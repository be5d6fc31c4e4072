"""The HTTP/1.1 proxy handler (h11 parses both sides; no hand-written HTTP parsing).

Per request on the client connection (keep-alive; pipelined requests wait in h11's buffer until the
previous exchange is done): decide against the rules (:mod:`membrane.policy.l7http`); a denied
request's body is read and dropped and the client gets ``403`` with body ``Access denied\\r\\n``
on the same connection (as Cilium's Envoy filter); an allowed one goes upstream (opened on first
use, from the client's address) with its body streamed (chunked stays chunked), and the response
comes back the same way. Upstream failure → ``503`` like Envoy. Malformed input → ``400`` and the
connection closes. Every request and response is reported through ``ctx.emit``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import h11

from membrane.hubble.l7flow import DROPPED, FORWARDED, REQUEST, RESPONSE, L7Record
from membrane.policy.l7http import HTTPRule, decide
from membrane.proxy.registry import Conn, L7Context

log = logging.getLogger(__name__)

READ_SIZE = 65536
DENIED_BODY = b"Access denied\r\n"
UPSTREAM_FAILED_BODY = b"upstream connect error or disconnect/reset before headers. reset reason: connection failure"
IDLE_TIMEOUT = 300.0


class _Peer:
    """One side of the proxy: an h11 state machine on a stream.

    Sent events are queued and written in one piece when the proxy is about to wait (a read of
    either side, or the end of an exchange): a response's head, body and end leave in one ``send``
    (one TCP segment, with TCP_NODELAY) instead of one each — per-write syscalls and segments were
    the proxy's largest cost. At most one read's worth (READ_SIZE) is queued, so backpressure holds.
    """

    def __init__(self, role: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.h = h11.Connection(role, max_incomplete_event_size=64 * 1024)
        self.reader, self.writer = reader, writer
        self.pending: list[bytes] = []

    async def next_event(self, other: _Peer | None = None) -> Any:
        """The next event; before blocking on a read, what this side and ``other`` queued is written."""
        while True:
            event = self.h.next_event()
            if event is not h11.NEED_DATA:
                return event
            await self.flush()
            if other is not None:
                await other.flush()
            async with asyncio.timeout(IDLE_TIMEOUT):  # no task per read, unlike wait_for
                data = await self.reader.read(READ_SIZE)
            self.h.receive_data(data)

    def queue(self, *events: Any) -> None:
        for event in events:
            data = self.h.send(event)
            if data:
                self.pending.append(data)

    async def flush(self) -> None:
        if self.pending:
            data = self.pending[0] if len(self.pending) == 1 else b"".join(self.pending)
            self.pending.clear()
            self.writer.write(data)
            await self.writer.drain()

    async def send(self, *events: Any) -> None:
        self.queue(*events)
        await self.flush()


def _text(b: bytes) -> str:
    return b.decode("latin-1")


def _headers(req: Any) -> list[tuple[str, str]]:
    return [(_text(k), _text(v)) for k, v in req.headers.raw_items()]


async def _local_reply(client: _Peer, status: int, body: bytes, close: bool = False) -> None:
    headers = [("content-length", str(len(body))), ("content-type", "text/plain")]
    if close:
        headers.append(("connection", "close"))
    await client.send(h11.Response(status_code=status, headers=headers), h11.Data(data=body), h11.EndOfMessage())


async def _drain_body(client: _Peer) -> None:
    while True:
        event = await client.next_event()
        if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            return


def compiled_rules(ctx: L7Context) -> list[HTTPRule] | None:
    cached = ctx.extra.get("http-rules")
    if cached is None and ctx.rules is not None:
        cached = ctx.extra["http-rules"] = [HTTPRule.compile(r) for r in ctx.rules]
    return None if ctx.rules is None else cached


async def handle_http(conn: Conn, ctx: L7Context) -> None:
    client = _Peer(h11.SERVER, conn.reader, conn.writer)
    upstream: _Peer | None = None
    rules = compiled_rules(ctx)
    secret_value = ctx.extra.get("secret_value") or (lambda _ns, _name: None)
    ingress = ctx.redirect.direction == "ingress"

    def record(kind: str, verdict: str, http: dict[str, Any], latency: int = 0) -> None:
        ctx.emit(L7Record("http", kind, verdict, ctx.client, ctx.original_dst, ctx.src_identity,
                          ctx.dst_identity, ingress, latency_ns=latency, http=http))

    try:
        while True:
            try:
                event = await client.next_event()
            except h11.RemoteProtocolError:
                if client.h.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await _local_reply(client, 400, b"Bad Request\r\n", close=True)
                return
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return
            if not isinstance(event, h11.Request):
                return
            start = time.monotonic_ns()
            method, target = _text(event.method), _text(event.target)
            headers = _headers(event)
            host = next((v for k, v in headers if k.lower() == "host"), ctx.original_dst[0])
            info = {"method": method, "url": f"http://{host}{target}", "protocol": f"HTTP/{_text(event.http_version)}",
                    "headers": headers}
            decision = decide(rules, method, target, headers, secret_value)
            if not decision.allowed:
                await _drain_body(client)
                record(REQUEST, DROPPED, info)
                await _local_reply(client, 403, DENIED_BODY)
            else:
                forwarded = {**info, "headers": decision.headers}
                if upstream is None:
                    try:
                        reader, writer = await ctx.open_upstream()
                        upstream = _Peer(h11.CLIENT, reader, writer)
                    except (TimeoutError, OSError) as exc:
                        log.info("http proxy: upstream %s: %s", ctx.original_dst, exc)
                        await _drain_body(client)
                        record(REQUEST, FORWARDED, forwarded)
                        await _local_reply(client, 503, UPSTREAM_FAILED_BODY)
                        record(RESPONSE, FORWARDED, {**info, "code": 503}, time.monotonic_ns() - start)
                        if client.h.our_state is h11.MUST_CLOSE:
                            return
                        client.h.start_next_cycle()
                        continue
                # unchanged headers: the parsed request goes as it came (no second validation, bytes kept)
                upstream.queue(event if decision.headers == headers else
                               h11.Request(method=event.method, target=event.target, headers=decision.headers,
                                           http_version=event.http_version))
                while True:  # the request body
                    part = await client.next_event(upstream)
                    if isinstance(part, h11.Data):
                        upstream.queue(part)
                    elif isinstance(part, h11.EndOfMessage):
                        upstream.queue(part)
                        break
                    else:
                        record(REQUEST, FORWARDED, forwarded)
                        return
                await upstream.flush()  # the request leaves first; its flow is built while the upstream answers
                record(REQUEST, FORWARDED, forwarded)
                code = 0
                while True:  # the response, interim responses included
                    part = await upstream.next_event(client)
                    if isinstance(part, h11.ConnectionClosed):
                        if code == 0:
                            await _local_reply(client, 503, UPSTREAM_FAILED_BODY, close=True)
                            record(RESPONSE, FORWARDED, {**info, "code": 503}, time.monotonic_ns() - start)
                        else:
                            await client.flush()  # what the upstream sent before it closed
                        return
                    if isinstance(part, (h11.Response, h11.InformationalResponse)):
                        code = part.status_code
                        client.queue(part)  # as parsed: h11 re-frames it for the client's side
                    elif isinstance(part, h11.Data):
                        client.queue(part)
                    elif isinstance(part, h11.EndOfMessage):
                        await client.send(part)
                        break
                record(RESPONSE, FORWARDED, {**info, "code": code}, time.monotonic_ns() - start)
                if upstream.h.our_state is h11.MUST_CLOSE or upstream.h.their_state is h11.MUST_CLOSE:
                    upstream.writer.close()
                    upstream = None
                else:
                    upstream.h.start_next_cycle()
            if client.h.our_state is h11.MUST_CLOSE or client.h.their_state is h11.MUST_CLOSE:
                return
            client.h.start_next_cycle()
    except (TimeoutError, ConnectionError, h11.ProtocolError) as exc:
        log.debug("http proxy: connection ended: %s", exc)
    finally:
        if upstream is not None:
            upstream.writer.close()
