"""The Kafka proxy (cilium-semantics §4.3) on the L7 framework: one client connection, request by request.

Each request frame is parsed (membrane.kafka.protocol) and checked against the port's ``kafka:``
rules (``ctx.rules``; None = every request). An allowed request goes to the broker unchanged; a
denied one is answered with error 29 TOPIC_AUTHORIZATION_FAILED on each of its topics
(membrane.kafka.responses) and the connection stays up. A denied Metadata request (v1+) goes to the
broker asking for no topic and the denied topics are spliced into its answer: clients ignore a
Metadata answer without brokers. Kafka answers in request order, so the proxy's own answers wait
behind the broker answers of earlier requests. A request that cannot be parsed, a denied request
that cannot be answered with error 29, or a frame over 100 MiB closes the connection. Every request
becomes an L7 record (``Kafka request produce correlation id 3 topic 'empire-announce'``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable

from membrane.hubble.l7flow import DROPPED, FORWARDED, REQUEST, L7Record
from membrane.kafka.protocol import (
    TOPIC_AUTHORIZATION_FAILED,
    KafkaError,
    Request,
    parse_request,
    split_frames,
)
from membrane.kafka.responses import error_response, metadata_without_topics, splice_denied_metadata
from membrane.kafka.rules import KafkaRule, compile_rules, denied_topics
from membrane.proxy.registry import Conn, L7Context

log = logging.getLogger(__name__)

READ_SIZE = 65536
Pending = bytes | Callable[[bytes], bytes] | None  # own answer | rewrite of the broker's | the broker's as is


def kafka_summary(api_key: str, correlation_id: int, topic: str) -> str:
    return f"Kafka request {api_key} correlation id {correlation_id} topic '{topic}'"


class _Relay:
    def __init__(self, conn: Conn, ctx: L7Context, rules: tuple[KafkaRule, ...] | None,
                 upstream: asyncio.StreamWriter) -> None:
        self.conn, self.ctx, self.rules, self.upstream = conn, ctx, rules, upstream
        self.pending: collections.deque[Pending] = collections.deque()

    def emit(self, req: Request, verdict: str, topic: str, code: int) -> None:
        try:
            self.ctx.emit(L7Record(
                kind="kafka", type=REQUEST, verdict=verdict, src=self.ctx.client, dst=self.ctx.original_dst,
                src_identity=self.ctx.src_identity, dst_identity=self.ctx.dst_identity,
                ingress=self.ctx.redirect.direction == "ingress",
                kafka={"error_code": code, "api_version": req.api_version, "api_key": req.api_name,
                       "correlation_id": req.correlation_id, "topic": topic},
                summary=kafka_summary(req.api_name, req.correlation_id, topic)))
        except Exception as exc:  # noqa: BLE001 - observability never breaks the relay
            log.debug("kafka proxy: record not emitted: %s", exc)

    def request(self, req: Request) -> bool:
        """Forward or answer one request; False closes the connection."""
        denied = None if self.rules is None else denied_topics(self.rules, req)
        topic = (denied or req.topic_names or ("",))[0]
        if denied is None:
            self.emit(req, FORWARDED, topic, 0)
            if req.expects_response:
                self.pending.append(None)
            self.upstream.write(req.frame)
            return True
        self.emit(req, DROPPED, topic, TOPIC_AUTHORIZATION_FAILED)
        ask = metadata_without_topics(req)
        if ask is not None:
            self.pending.append(lambda f: splice_denied_metadata(req, f))
            self.upstream.write(ask)
            return True
        answer = error_response(req)
        if answer is None:
            log.info("kafka proxy: %s: %s denied, not answerable with error 29: connection closed",
                     self.ctx.client, req.api_name)
            return False
        if req.expects_response:
            self.pending.append(answer)
            self.flush()
        return True

    def flush(self) -> None:
        while self.pending and isinstance(self.pending[0], bytes):
            self.conn.writer.write(self.pending.popleft())  # type: ignore[arg-type]

    def from_broker(self, frame: bytes) -> None:
        due = self.pending.popleft() if self.pending else None
        self.conn.writer.write(due(frame) if callable(due) else frame)
        self.flush()


async def handle_kafka(conn: Conn, ctx: L7Context) -> None:
    """The registry handler of ``kafka``."""
    try:
        rules = None if ctx.rules is None else compile_rules(ctx.rules)
    except ValueError as exc:
        log.warning("kafka proxy: rules of %s unusable: %s", ctx.redirect, exc)
        return
    up_reader, up_writer = await ctx.open_upstream()
    relay = _Relay(conn, ctx, rules, up_writer)

    async def broker_side() -> None:
        buffer = b""
        try:
            while chunk := await up_reader.read(READ_SIZE):
                frames, buffer = split_frames(buffer + chunk)
                for f in frames:
                    relay.from_broker(f)
                await conn.writer.drain()
        except (OSError, KafkaError) as exc:
            log.debug("kafka proxy: broker side of %s ended: %s", ctx.client, exc)
        conn.writer.close()

    task = asyncio.create_task(broker_side())
    buffer = b""
    try:
        while chunk := await conn.reader.read(READ_SIZE):
            frames, buffer = split_frames(buffer + chunk)
            for f in frames:
                if not relay.request(parse_request(f)):
                    return
            await up_writer.drain()
            await conn.writer.drain()
    except KafkaError as exc:
        log.info("kafka proxy: %s: %s: connection closed", ctx.client, exc)
    except OSError:
        pass
    finally:
        up_writer.close()
        task.cancel()
