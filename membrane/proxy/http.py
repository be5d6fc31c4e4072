"""The HTTP/1.1 proxy handler (llhttp parses both sides and :mod:`membrane.proxy.http_wire` frames).

Per request on the client connection (keep-alive; pipelined requests wait, parsed, until the
previous exchange is done): decide against the rules (:mod:`membrane.policy.l7http`); a denied
request's body is read and dropped and the client gets ``403`` with body ``Access denied\\r\\n``
on the same connection (as Cilium's Envoy filter); an allowed one goes upstream (opened on first
use, from the client's address) with its body streamed (chunked stays chunked), and the response
comes back the same way. Upstream failure → ``503`` like Envoy. Malformed input → ``400`` and the
connection closes. Every request and response is reported through ``ctx.emit``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from membrane.hubble.l7flow import DROPPED, FORWARDED, REQUEST, RESPONSE, L7Record
from membrane.policy.l7http import HTTPRule, decide
from membrane.proxy.http_wire import CLOSED, Data, EndOfMessage, Peer, ProtocolError, Request, Response
from membrane.proxy.registry import Conn, L7Context

log = logging.getLogger(__name__)

DENIED_BODY = b"Access denied\r\n"
UPSTREAM_FAILED_BODY = b"upstream connect error or disconnect/reset before headers. reset reason: connection failure"


def _text(b: bytes) -> str:
    return b.decode("latin-1")


def _headers(req: Any) -> list[tuple[str, str]]:
    return [(_text(k), _text(v)) for k, v in req.headers]


REASONS = {400: b"Bad Request", 403: b"Forbidden", 503: b"Service Unavailable"}


async def _local_reply(client: Peer, status: int, body: bytes, close: bool = False) -> None:
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"text/plain")]
    if close:
        headers.append((b"connection", b"close"))
    await client.send(Response(status, headers, REASONS[status]), Data(body), EndOfMessage())


async def _drain_body(client: Peer) -> None:
    while True:
        event = await client.next_event()
        if isinstance(event, EndOfMessage) or event is CLOSED:
            return


def compiled_rules(ctx: L7Context) -> list[HTTPRule] | None:
    cached = ctx.extra.get("http-rules")
    if cached is None and ctx.rules is not None:
        cached = ctx.extra["http-rules"] = [HTTPRule.compile(r) for r in ctx.rules]
    return None if ctx.rules is None else cached


async def handle_http(conn: Conn, ctx: L7Context) -> None:
    client = Peer("server", conn.reader, conn.writer)
    upstream: Peer | None = None
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
            except ProtocolError:
                if not client.responding:
                    await _local_reply(client, 400, b"Bad Request\r\n", close=True)
                return
            if not isinstance(event, Request):
                return
            start = time.monotonic_ns()
            method, target = _text(event.method), _text(event.target)
            headers = _headers(event)
            host = next((v for k, v in headers if k.lower() == "host"), ctx.original_dst[0])
            info = {"method": method, "url": f"http://{host}{target}", "protocol": f"HTTP/{event.http_version}",
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
                        upstream = Peer("client", reader, writer)
                    except (TimeoutError, OSError) as exc:
                        log.info("http proxy: upstream %s: %s", ctx.original_dst, exc)
                        await _drain_body(client)
                        record(REQUEST, FORWARDED, forwarded)
                        await _local_reply(client, 503, UPSTREAM_FAILED_BODY)
                        record(RESPONSE, FORWARDED, {**info, "code": 503}, time.monotonic_ns() - start)
                        if client.must_close:
                            return
                        continue
                # unchanged headers: the parsed request goes as it came (no second validation, bytes kept)
                upstream.queue(event if decision.headers == headers else
                               Request(event.method, event.target,
                                       [(k.encode("latin-1"), v.encode("latin-1")) for k, v in decision.headers],
                                       event.http_version, event.keep_alive, event.framing))
                while True:  # the request body
                    part = await client.next_event(upstream)
                    if isinstance(part, Data):
                        upstream.queue(part)
                    elif isinstance(part, EndOfMessage):
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
                    if part is CLOSED:
                        if code == 0:
                            await _local_reply(client, 503, UPSTREAM_FAILED_BODY, close=True)
                            record(RESPONSE, FORWARDED, {**info, "code": 503}, time.monotonic_ns() - start)
                        else:
                            await client.flush()  # what the upstream sent before it closed
                        return
                    if isinstance(part, Response):
                        code = part.status_code
                        client.queue(part)  # as parsed: re-framed for the client's side when needed
                    elif isinstance(part, Data):
                        client.queue(part)
                    elif isinstance(part, EndOfMessage):
                        await client.send(part)
                        break
                record(RESPONSE, FORWARDED, {**info, "code": code}, time.monotonic_ns() - start)
                if upstream.must_close:
                    upstream.writer.close()
                    upstream = None
            if client.must_close:
                return
    except (TimeoutError, ConnectionError, ProtocolError) as exc:
        log.debug("http proxy: connection ended: %s", exc)
    finally:
        if upstream is not None:
            upstream.writer.close()
