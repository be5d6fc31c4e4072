"""Error responses the proxy writes for a denied request (cilium-semantics §4.3), in the request's version.

Every topic (and partition) the request named gets error 29 TOPIC_AUTHORIZATION_FAILED, the other
fields their "unknown" values (-1 offsets, no records, no brokers); the client sees
``TopicAuthorizationException`` and the connection stays up. Only the API keys that carry topics
(membrane.kafka.protocol.TOPIC_VERSIONS) can be answered so; for the others :func:`error_response`
returns None and the proxy closes the connection, as Cilium's parser does.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from membrane.kafka.protocol import (
    FETCH,
    LIST_OFFSETS,
    METADATA,
    OFFSET_COMMIT,
    OFFSET_FETCH,
    PRODUCE,
    TOPIC_AUTHORIZATION_FAILED,
    TOPIC_VERSIONS,
    KafkaError,
    Reader,
    Request,
    TopicParts,
    flexible,
)

INT32_MIN = -(1 << 31)


class Writer:
    def __init__(self, flex: bool) -> None:
        self.flex = flex
        self.parts: list[bytes] = []

    def int8(self, v: int) -> Writer:
        self.parts.append(struct.pack("!b", v))
        return self

    def int16(self, v: int) -> Writer:
        self.parts.append(struct.pack("!h", v))
        return self

    def int32(self, v: int) -> Writer:
        self.parts.append(struct.pack("!i", v))
        return self

    def int64(self, v: int) -> Writer:
        self.parts.append(struct.pack("!q", v))
        return self

    def uvarint(self, v: int) -> Writer:
        out = bytearray()
        while True:
            b = v & 0x7F
            v >>= 7
            if v:
                out.append(b | 0x80)
            else:
                out.append(b)
                break
        self.parts.append(bytes(out))
        return self

    def string(self, s: str | None) -> Writer:
        if s is None:
            return self.uvarint(0) if self.flex else self.int16(-1)
        raw = s.encode()
        (self.uvarint(len(raw) + 1) if self.flex else self.int16(len(raw))).parts.append(raw)
        return self

    def null_bytes(self) -> Writer:
        return self.uvarint(0) if self.flex else self.int32(-1)

    def array(self, n: int) -> Writer:
        return self.uvarint(n + 1) if self.flex else self.int32(n)

    def null_array(self) -> Writer:
        return self.uvarint(0) if self.flex else self.int32(-1)

    def tags(self) -> Writer:
        return self.uvarint(0) if self.flex else self

    def raw(self, b: bytes) -> Writer:
        self.parts.append(b)
        return self

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def _topics(w: Writer, topics: tuple[TopicParts, ...], partition: Callable[[int], None]) -> None:
    w.array(len(topics))
    for t in topics:
        w.string(t.name)
        w.array(len(t.partitions))
        for p in t.partitions:
            partition(p)
            w.tags()
        w.tags()


def _produce(w: Writer, v: int, req: Request, code: int) -> None:
    def part(p: int) -> None:
        w.int32(p).int16(code).int64(-1)
        if v >= 2:
            w.int64(-1)  # log_append_time_ms
        if v >= 5:
            w.int64(-1)  # log_start_offset
        if v >= 8:
            w.array(0).string(None)  # record_errors, error_message
    _topics(w, req.topics, part)
    if v >= 1:
        w.int32(0)  # throttle_time_ms


def _fetch(w: Writer, v: int, req: Request, code: int) -> None:
    if v >= 1:
        w.int32(0)
    if v >= 7:
        w.int16(0).int32(0)  # error_code, session_id

    def part(p: int) -> None:
        w.int32(p).int16(code).int64(-1)
        if v >= 4:
            w.int64(-1)  # last_stable_offset
        if v >= 5:
            w.int64(-1)  # log_start_offset
        if v >= 4:
            w.null_array()  # aborted_transactions
        if v >= 11:
            w.int32(-1)  # preferred_read_replica
        w.null_bytes()  # records
    _topics(w, req.topics, part)


def _list_offsets(w: Writer, v: int, req: Request, code: int) -> None:
    if v >= 2:
        w.int32(0)

    def part(p: int) -> None:
        w.int32(p).int16(code)
        if v == 0:
            w.array(0)  # old_style_offsets
        else:
            w.int64(-1).int64(-1)  # timestamp, offset
        if v >= 4:
            w.int32(-1)  # leader_epoch
    _topics(w, req.topics, part)


def _metadata(w: Writer, v: int, req: Request, code: int) -> None:
    if v >= 3:
        w.int32(0)
    w.array(0)  # brokers
    if v >= 2:
        w.string(None)  # cluster_id
    if v >= 1:
        w.int32(-1)  # controller_id
    _metadata_topics(w, v, req, code)
    if 8 <= v <= 10:
        w.int32(INT32_MIN)  # cluster_authorized_operations


def _metadata_topics(w: Writer, v: int, req: Request, code: int) -> None:
    w.array(len(req.topics))
    for t in req.topics:
        w.int16(code).string(t.name)
        if v >= 10:
            w.raw(bytes(16))  # topic_id
        if v >= 1:
            w.int8(0)  # is_internal
        w.array(0)  # partitions
        if v >= 8:
            w.int32(INT32_MIN)  # topic_authorized_operations
        w.tags()


def _offset_commit(w: Writer, v: int, req: Request, code: int) -> None:
    if v >= 3:
        w.int32(0)
    _topics(w, req.topics, lambda p: w.int32(p).int16(code) and None)


def _offset_fetch(w: Writer, v: int, req: Request, code: int) -> None:
    if v >= 3:
        w.int32(0)

    def part(p: int) -> None:
        w.int32(p).int64(-1)
        if v >= 5:
            w.int32(-1)  # committed_leader_epoch
        w.string("").int16(code)
    _topics(w, req.topics, part)
    if v >= 2:
        w.int16(0)  # error_code


_BUILDERS = {PRODUCE: _produce, FETCH: _fetch, LIST_OFFSETS: _list_offsets, METADATA: _metadata,
             OFFSET_COMMIT: _offset_commit, OFFSET_FETCH: _offset_fetch}


def error_response(req: Request, code: int = TOPIC_AUTHORIZATION_FAILED) -> bytes | None:
    """The whole response frame (size prefix included) answering ``req`` with ``code`` on every topic;
    None when this API key cannot be answered so."""
    build = _BUILDERS.get(req.api_key)
    if build is None or req.api_version > TOPIC_VERSIONS[req.api_key]:
        return None
    flex = flexible(req.api_key, req.api_version)
    w = Writer(flex)
    w.int32(req.correlation_id).tags()  # response header v0 / v1
    build(w, req.api_version, req, code)
    w.tags()
    body = w.bytes()
    return struct.pack("!i", len(body)) + body


# ---- Metadata: the broker's list with the denied topics -----------------------------------------------------------
# Clients ignore a Metadata answer without brokers (kafka-python drops it; the error never surfaces), so
# a denied Metadata request (v1+) goes to the broker asking for no topic at all, and the broker's answer
# (its brokers, cluster and controller) gets the denied topics with error 29 spliced in.

def metadata_without_topics(req: Request) -> bytes | None:
    """The request frame asking the broker for no topic (None for v0, where an empty list means all)."""
    if req.api_key != METADATA or req.api_version < 1 or req.topics_span == (0, 0):
        return None
    start, end = req.topics_span
    body = req.frame[4:start] + Writer(flexible(METADATA, req.api_version)).array(0).bytes() + req.frame[end:]
    return struct.pack("!i", len(body)) + body


def splice_denied_metadata(req: Request, broker_frame: bytes, code: int = TOPIC_AUTHORIZATION_FAILED) -> bytes:
    """The broker's answer to :func:`metadata_without_topics` with ``req``'s topics, each failing with
    ``code``; KafkaError if it is not such an answer."""
    v = req.api_version
    flex = flexible(METADATA, v)
    r = Reader(broker_frame, 4)
    if r.int32() != req.correlation_id:
        raise KafkaError("metadata answer for another correlation id")
    r.tagged_fields(flex)
    if v >= 3:
        r.int32()
    for _ in range(max(r.array_len(flex), 0)):
        r.int32(), r.string(flex), r.int32()
        if v >= 1:
            r.string(flex, nullable=True)
        r.tagged_fields(flex)
    if v >= 2:
        r.string(flex, nullable=True)
    r.int32()  # controller_id
    head = r.pos
    if r.array_len(flex) != 0:
        raise KafkaError("metadata answer names topics that were not asked for")
    w = Writer(flex)
    _metadata_topics(w, v, req, code)
    body = broker_frame[4:head] + w.bytes() + broker_frame[r.pos:]
    return struct.pack("!i", len(body)) + body
