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

import asyncio
import logging
import os
import time
from typing import Any

from membrane.hubble.l7flow import DROPPED, FORWARDED, REQUEST, RESPONSE, L7Record
from membrane.policy.l7http import HTTPRule, decide
from membrane.proxy.http_wire import CLOSED, Data, EndOfMessage, Peer, ProtocolError, Request, Response
from membrane.proxy.protocol_io import Stepper
from membrane.proxy.registry import Conn, L7Context

log = logging.getLogger(__name__)

DENIED_BODY = b"Access denied\r\n"
UPSTREAM_FAILED_BODY = b"upstream connect error or disconnect/reset before headers. reset reason: connection failure"


def _text(b: bytes) -> str:
    return b.decode("latin-1")


DECISIONS_MAX = 256  # per connection


class _Policy:
    """The connection's rules, deciding requests. When no rule reads headers (no ``headers``, no
    ``headerMatches``), a decision depends only on method, path and Host, and is kept per connection
    (its identities and rules do not change while it lives): a keep-alive client asking the same
    thing again is not matched again."""

    __slots__ = ("rules", "secret_value", "by_request")

    def __init__(self, rules: list[HTTPRule] | None, secret_value: Any) -> None:
        self.rules, self.secret_value = rules, secret_value
        reads_headers = rules is not None and any(r.headers or r.header_matches for r in rules)
        self.by_request: dict[tuple[str, str, str | None], bool] | None = None if reads_headers else {}

    def decide(self, method: str, target: str, headers: list[tuple[str, str]],
               host: str | None) -> tuple[bool, list[tuple[str, str]]]:
        """(allowed, the headers to forward)."""
        cache = self.by_request
        if cache is None:
            d = decide(self.rules, method, target, headers, self.secret_value)
            return d.allowed, d.headers
        key = (method, target, host)
        allowed = cache.get(key)
        if allowed is None:
            allowed = decide(self.rules, method, target, headers, self.secret_value).allowed
            if len(cache) >= DECISIONS_MAX:
                cache.clear()
            cache[key] = allowed
        return allowed, headers


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


STEPPED = os.environ.get("MEMBRANE_PROXY_STEPPED", "1") != "0"  # 0: the handler's own Task waits (A/B)


async def handle_http(conn: Conn, ctx: L7Context) -> None:
    """The connection's exchanges, stepped by its wires (:class:`~membrane.proxy.protocol_io.Stepper`):
    a request is forwarded, and a response answered, in the loop iteration that read it."""
    if not STEPPED:
        await _exchanges(conn, ctx, None)
        return
    stepper = Stepper()
    try:
        await stepper.start(_exchanges(conn, ctx, stepper))
    finally:
        stepper.close()  # cancelled (the proxy stopping): the exchanges' cleanup runs


async def _open_upstream(ctx: L7Context) -> Any:
    return await ctx.open_upstream()


async def _exchanges(conn: Conn, ctx: L7Context, stepper: Stepper | None) -> None:
    client = Peer("server", conn.reader, conn.writer, stepper)
    upstream: Peer | None = None
    policy = _Policy(compiled_rules(ctx), ctx.extra.get("secret_value") or (lambda _ns, _name: None))
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
            method, target = event.method.decode("latin-1"), event.target.decode("latin-1")
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
            host = None
            for k, v in headers:
                if k.lower() == "host":
                    host = v
                    break
            info = {"method": method, "url": f"http://{host or ctx.original_dst[0]}{target}",
                    "protocol": f"HTTP/{event.http_version}", "headers": headers}
            allowed, out_headers = policy.decide(method, target, headers, host)
            if not allowed:
                await _drain_body(client)
                record(REQUEST, DROPPED, info)
                await _local_reply(client, 403, DENIED_BODY)
            else:
                forwarded = info if out_headers is headers else {**info, "headers": out_headers}
                if upstream is None:
                    try:
                        # in a Task of its own: connect timeouts need one (wait_for on Python ≥ 3.12)
                        reader, writer = await asyncio.get_running_loop().create_task(_open_upstream(ctx))
                        upstream = Peer("client", reader, writer, stepper)
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
                upstream.queue(event if out_headers is headers or out_headers == headers else
                               Request(event.method, event.target,
                                       [(k.encode("latin-1"), v.encode("latin-1")) for k, v in out_headers],
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
