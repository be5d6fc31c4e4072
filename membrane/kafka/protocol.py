"""The Kafka wire protocol as far as policy needs it: frames, request headers, the topics of requests.

A frame is an int32 size and that many bytes. A request header is api_key int16, api_version int16,
correlation_id int32 and client_id (nullable int16 string), plus tagged fields when the request's
version is *flexible* (KIP-482: compact strings/arrays with unsigned-varint lengths, tagged fields).
For the API keys that carry topics the topics are read with their partition indices (a denied
request's error response names each of them); versions whose layout is not known here, or that name
topics by id only, are :class:`KafkaError` (the proxy closes such a connection rather than guess).

Layouts follow Apache Kafka's message definitions (``clients/src/main/resources/common/message``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

MAX_FRAME = 100 * 1024 * 1024  # socket.request.max.bytes, Kafka's default
TOPIC_AUTHORIZATION_FAILED = 29

API_KEYS = {  # Cilium's apiKey names (pkg/policy/api/kafka.go), 0-33
    "produce": 0, "fetch": 1, "offsets": 2, "metadata": 3, "leaderandisr": 4, "stopreplica": 5,
    "updatemetadata": 6, "controlledshutdown": 7, "offsetcommit": 8, "offsetfetch": 9, "findcoordinator": 10,
    "joingroup": 11, "heartbeat": 12, "leavegroup": 13, "syncgroup": 14, "describegroups": 15, "listgroups": 16,
    "saslhandshake": 17, "apiversions": 18, "createtopics": 19, "deletetopics": 20, "deleterecords": 21,
    "initproducerid": 22, "offsetforleaderepoch": 23, "addpartitionstotxn": 24, "addoffsetstotxn": 25,
    "endtxn": 26, "writetxnmarkers": 27, "txnoffsetcommit": 28, "describeacls": 29, "createacls": 30,
    "deleteacls": 31, "describeconfigs": 32, "alterconfigs": 33,
}
API_NAMES = {v: k for k, v in API_KEYS.items()}
PRODUCE, FETCH, LIST_OFFSETS, METADATA, OFFSET_COMMIT, OFFSET_FETCH, API_VERSIONS = 0, 1, 2, 3, 8, 9, 18
# first flexible version of each API key (KIP-482); absent: never flexible
FLEXIBLE_FROM = {0: 9, 1: 12, 2: 6, 3: 9, 4: 4, 5: 2, 6: 6, 7: 3, 8: 8, 9: 6, 10: 3, 11: 6, 12: 4, 13: 4, 14: 4,
                 15: 5, 16: 3, 18: 3, 19: 5, 20: 4, 21: 2, 22: 2, 23: 4, 24: 3, 25: 3, 26: 3, 27: 1, 28: 3, 29: 2,
                 30: 2, 31: 2, 32: 4, 33: 2}
# highest version whose topics this module reads (by name)
TOPIC_VERSIONS = {PRODUCE: 11, FETCH: 12, LIST_OFFSETS: 9, METADATA: 12, OFFSET_COMMIT: 9, OFFSET_FETCH: 7}


class KafkaError(ValueError):
    """A frame or request this module cannot read; the text says where."""


def flexible(api_key: int, version: int) -> bool:
    first = FLEXIBLE_FROM.get(api_key)
    return first is not None and version >= first


class Reader:
    """Big-endian primitives over one buffer; every read past its end is a KafkaError."""

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.pos = offset

    def _take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise KafkaError(f"truncated {what} at byte {self.pos} (need {n}, have {len(self.data) - self.pos})")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int8(self) -> int:
        return struct.unpack("!b", self._take(1, "int8"))[0]

    def int16(self) -> int:
        return struct.unpack("!h", self._take(2, "int16"))[0]

    def int32(self) -> int:
        return struct.unpack("!i", self._take(4, "int32"))[0]

    def int64(self) -> int:
        return struct.unpack("!q", self._take(8, "int64"))[0]

    def uvarint(self) -> int:
        shift = value = 0
        while True:
            b = self._take(1, "varint")[0]
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
            if shift > 28:
                raise KafkaError(f"varint too long at byte {self.pos}")

    def string(self, flex: bool = False, *, nullable: bool = False) -> str | None:
        n = self.uvarint() - 1 if flex else self.int16()
        if n < 0:
            if nullable or n == -1:
                return None
            raise KafkaError(f"negative string length {n} at byte {self.pos}")
        raw = self._take(n, "string")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise KafkaError(f"string at byte {self.pos - n} is not UTF-8") from None

    def skip_bytes(self, flex: bool = False) -> None:
        n = self.uvarint() - 1 if flex else self.int32()
        if n > 0:
            self._take(n, "bytes")

    def array_len(self, flex: bool = False) -> int:
        """Element count; -1 for a null array."""
        n = self.uvarint() - 1 if flex else self.int32()
        if n < -1:
            raise KafkaError(f"negative array length {n} at byte {self.pos}")
        if n > len(self.data) - self.pos:  # every element takes at least a byte
            raise KafkaError(f"array of {n} elements at byte {self.pos} is longer than the frame")
        return n

    def skip(self, n: int, what: str = "field") -> None:
        self._take(n, what)

    def tagged_fields(self, flex: bool) -> None:
        if not flex:
            return
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self._take(self.uvarint(), "tagged field")


@dataclass(frozen=True)
class TopicParts:
    name: str
    partitions: tuple[int, ...] = ()


@dataclass(frozen=True)
class Request:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str
    topics: tuple[TopicParts, ...] = ()  # in request order
    all_topics: bool = False  # Metadata asking for every topic (null or empty list)
    acks: int = -1  # Produce only: 0 means the client expects no response
    topics_span: tuple[int, int] = (0, 0)  # Metadata only: where the topics array lies in ``frame``
    frame: bytes = field(default=b"", repr=False, compare=False)  # the whole frame, size included

    @property
    def api_name(self) -> str:
        return API_NAMES.get(self.api_key, str(self.api_key))

    @property
    def expects_response(self) -> bool:
        return not (self.api_key == PRODUCE and self.acks == 0)

    @property
    def topic_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.name for t in self.topics))


def frame_size(head: bytes) -> int:
    """The body size a frame's 4-byte prefix announces; KafkaError when it is negative or too big."""
    (size,) = struct.unpack("!i", head[:4])
    if size < 0 or size > MAX_FRAME:
        raise KafkaError(f"frame of {size} bytes refused (limit {MAX_FRAME})")
    return size


def split_frames(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete frames (size prefix included) at the front of a stream buffer, and the rest."""
    out: list[bytes] = []
    while len(buffer) >= 4:
        size = frame_size(buffer)
        if len(buffer) < 4 + size:
            break
        out.append(buffer[:4 + size])
        buffer = buffer[4 + size:]
    return out, buffer


def parse_request(frame: bytes) -> Request:
    """A whole request frame (size prefix included): its header, and its topics where it has some."""
    if len(frame) < 4:
        raise KafkaError("truncated frame size")
    size = frame_size(frame)
    if len(frame) != 4 + size:
        raise KafkaError(f"frame says {size} bytes, has {len(frame) - 4}")
    r = Reader(frame, 4)
    key, version, correlation = r.int16(), r.int16(), r.int32()
    if key not in API_NAMES:
        raise KafkaError(f"unknown api key {key}")
    if version < 0:
        raise KafkaError(f"negative api version {version}")
    client = r.string(nullable=True) or ""
    if key in TOPIC_VERSIONS and version > TOPIC_VERSIONS[key]:
        raise KafkaError(f"{API_NAMES[key]} v{version} is newer than the versions read here "
                         f"(up to v{TOPIC_VERSIONS[key]})")
    flex = flexible(key, version)
    r.tagged_fields(flex)
    topics: tuple[TopicParts, ...] = ()
    all_topics = False
    acks = -1
    if key == PRODUCE:
        peek = Reader(frame, r.pos)
        if version >= 3:
            peek.string(flex, nullable=True)
        acks = peek.int16()
    span_from = r.pos
    if key in TOPIC_VERSIONS:
        found = _TOPIC_READERS[key](r, version, flex)
        if found is None:
            all_topics = True
        else:
            topics = tuple(found)
            all_topics = key == METADATA and not found and version < 1
    span = (span_from, r.pos) if key == METADATA else (0, 0)
    return Request(key, version, correlation, client, topics, all_topics, acks, span, frame)


# ---- topic readers (the fields before the topics skipped; each returns None for "every topic") ------------------

def _partitions(r: Reader, flex: bool, after_index: int, read_rest: object = None) -> tuple[int, ...]:
    out = []
    for _ in range(max(r.array_len(flex), 0)):
        out.append(r.int32())
        if callable(read_rest):
            read_rest()
        else:
            r.skip(after_index, "partition")
        r.tagged_fields(flex)
    return tuple(out)


def _produce(r: Reader, v: int, flex: bool) -> list[TopicParts]:
    if v >= 3:
        r.string(flex, nullable=True)  # transactional_id
    r.int16(), r.int32()  # acks, timeout_ms
    out = []
    for _ in range(max(r.array_len(flex), 0)):
        name = r.string(flex) or ""
        parts = _partitions(r, flex, 0, lambda: r.skip_bytes(flex))
        r.tagged_fields(flex)
        out.append(TopicParts(name, parts))
    return out


def _fetch(r: Reader, v: int, flex: bool) -> list[TopicParts]:
    r.int32(), r.int32(), r.int32()  # replica_id, max_wait_ms, min_bytes
    if v >= 3:
        r.int32()  # max_bytes
    if v >= 4:
        r.int8()  # isolation_level
    if v >= 7:
        r.int32(), r.int32()  # session_id, session_epoch
    rest = 8 + 4 + (4 if v >= 9 else 0) + (4 if v >= 12 else 0) + (8 if v >= 5 else 0)
    out = []
    for _ in range(max(r.array_len(flex), 0)):
        name = r.string(flex) or ""
        out.append(TopicParts(name, _partitions(r, flex, rest)))
        r.tagged_fields(flex)
    return out


def _list_offsets(r: Reader, v: int, flex: bool) -> list[TopicParts]:
    r.int32()  # replica_id
    if v >= 2:
        r.int8()  # isolation_level
    rest = (4 if v >= 4 else 0) + 8 + (4 if v == 0 else 0)
    out = []
    for _ in range(max(r.array_len(flex), 0)):
        name = r.string(flex) or ""
        out.append(TopicParts(name, _partitions(r, flex, rest)))
        r.tagged_fields(flex)
    return out


def _metadata(r: Reader, v: int, flex: bool) -> list[TopicParts] | None:
    n = r.array_len(flex)
    if n < 0:
        return None
    out = []
    for _ in range(n):
        if v >= 10:
            r.skip(16, "topic id")
        name = r.string(flex, nullable=v >= 10)
        if name is None:
            raise KafkaError("metadata by topic id is not supported")
        out.append(TopicParts(name))
        r.tagged_fields(flex)
    return out


def _offset_commit(r: Reader, v: int, flex: bool) -> list[TopicParts]:
    r.string(flex)  # group_id
    if v >= 1:
        r.int32(), r.string(flex)  # generation_id, member_id
    if v >= 7:
        r.string(flex, nullable=True)  # group_instance_id
    if 2 <= v <= 4:
        r.int64()  # retention_time_ms
    out = []
    for _ in range(max(r.array_len(flex), 0)):
        name = r.string(flex) or ""

        def rest() -> None:
            r.int64()  # committed_offset
            if v >= 6:
                r.int32()  # committed_leader_epoch
            if v == 1:
                r.int64()  # commit_timestamp
            r.string(flex, nullable=True)  # committed_metadata

        out.append(TopicParts(name, _partitions(r, flex, 0, rest)))
        r.tagged_fields(flex)
    return out


def _offset_fetch(r: Reader, v: int, flex: bool) -> list[TopicParts] | None:
    r.string(flex)  # group_id
    n = r.array_len(flex)
    if n < 0:
        return None
    out = []
    for _ in range(n):
        name = r.string(flex) or ""
        parts = [r.int32() for _ in range(max(r.array_len(flex), 0))]
        r.tagged_fields(flex)
        out.append(TopicParts(name, tuple(parts)))
    return out


_TOPIC_READERS = {PRODUCE: _produce, FETCH: _fetch, LIST_OFFSETS: _list_offsets, METADATA: _metadata,
                  OFFSET_COMMIT: _offset_commit, OFFSET_FETCH: _offset_fetch}
