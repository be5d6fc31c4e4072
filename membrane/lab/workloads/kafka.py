"""A single-node Kafka-protocol broker for the lab (stands in for ``wurstmeister/kafka`` and friends).

It speaks ApiVersions v0-3, Metadata v0-8, Produce v3-7, Fetch v4-11 and ListOffsets v1-5, the
versions librdkafka (kcat) and kafka-python negotiate against it, and keeps records in memory: a
produced RecordBatch (magic 2) gets its base offset rewritten (the CRC does not cover it) and is kept
whole, a fetch returns the batches from the asked offset. Topics are created on first use with one
partition (``KAFKA_CREATE_TOPICS=name:partitions[:replicas],…`` creates some at start). The broker
advertises the address each client connected to (``KAFKA_ADVERTISED_HOST_NAME`` overrides it), so a
client that came through a Service talks to the pod afterwards. Port: ``--port`` or ``KAFKA_PORT``
(default 9092).
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
from collections.abc import Callable

from membrane.kafka.protocol import KafkaError, Reader, split_frames
from membrane.kafka.responses import Writer
from membrane.lab.workloads import runtime

NODE_ID = 0
UNSUPPORTED_VERSION = 35
UNKNOWN_TOPIC_OR_PARTITION = 3
OFFSET_OUT_OF_RANGE = 1
VERSIONS = {18: (0, 3), 3: (0, 8), 0: (3, 7), 1: (4, 11), 2: (1, 5)}  # api key -> (min, max)
CLUSTER_ID = "membrane-lab-kafka"


class Log:
    """One partition: record batches with their base offsets."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int, bytes]] = []  # (base offset, next offset, batch bytes)
        self.next = 0

    def append(self, records: bytes) -> int:
        base = self.next
        pos = 0
        while pos + 61 <= len(records):
            (length,) = struct.unpack_from("!i", records, pos + 8)
            end = pos + 12 + length
            if length < 49 or end > len(records) or records[pos + 16] != 2:
                raise KafkaError("not a RecordBatch v2")
            (last_delta,) = struct.unpack_from("!i", records, pos + 23)
            batch = struct.pack("!q", self.next) + records[pos + 8:end]
            self.batches.append((self.next, self.next + last_delta + 1, batch))
            self.next += last_delta + 1
            pos = end
        return base

    def read(self, offset: int, max_bytes: int) -> bytes:
        out = bytearray()
        for _base, nxt, batch in self.batches:
            if nxt <= offset:
                continue
            if out and len(out) + len(batch) > max_bytes:
                break
            out += batch
        return bytes(out)


class Broker:
    def __init__(self, advertised: str = "", advertised_port: int = 0) -> None:
        self.advertised = advertised
        self.advertised_port = advertised_port
        self.topics: dict[str, list[Log]] = {}
        self.lock = threading.Lock()

    def topic(self, name: str, create: bool = True) -> list[Log] | None:
        with self.lock:
            if name not in self.topics and create and name:
                self.topics[name] = [Log()]
            return self.topics.get(name)

    # ---- one connection ---------------------------------------------------------------------------------------
    def serve_conn(self, conn: socket.socket) -> None:
        host = self.advertised or conn.getsockname()[0]
        port = self.advertised_port or conn.getsockname()[1]
        buffer = b""
        with conn:
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                try:
                    frames, buffer = split_frames(buffer + chunk)
                    for frame in frames:
                        out = self.handle(frame[4:], host, port)
                        if out is not None:
                            conn.sendall(struct.pack("!i", len(out)) + out)
                except (KafkaError, OSError) as exc:
                    runtime.log(f"kafka: closing connection: {exc}")
                    return

    def handle(self, body: bytes, host: str, port: int) -> bytes | None:
        r = Reader(body)
        key, version, correlation = r.int16(), r.int16(), r.int32()
        r.string(nullable=True)  # client_id
        lo, hi = VERSIONS.get(key, (1, 0))
        if key == 18 and not lo <= version <= hi:  # KIP-511: answer v0 with the error and our versions
            w = Writer(False).int32(correlation)
            return self._api_versions(w.int16(UNSUPPORTED_VERSION), 0).bytes()
        if not lo <= version <= hi:
            raise KafkaError(f"api key {key} v{version} not supported")
        flex = key == 18 and version >= 3
        if flex:
            r.tagged_fields(True)
        w = Writer(flex and key != 18).int32(correlation)  # ApiVersions answers with header v0
        w.flex = flex
        handler: Callable[[Reader, Writer, int, str, int], bytes | None] = getattr(self, f"_key{key}")
        return handler(r, w, version, host, port)

    def _api_versions(self, w: Writer, version: int) -> Writer:
        w.array(len(VERSIONS))
        for k, (lo, hi) in sorted(VERSIONS.items()):
            w.int16(k).int16(lo).int16(hi).tags()
        if version >= 1:
            w.int32(0)
        return w.tags()

    def _key18(self, r: Reader, w: Writer, v: int, _host: str, _port: int) -> bytes:
        return self._api_versions(w.int16(0), v).bytes()

    def _key3(self, r: Reader, w: Writer, v: int, host: str, port: int) -> bytes:  # Metadata
        n = r.array_len()
        names = [r.string() or "" for _ in range(max(n, 0))]
        auto = bool(r.int8()) if v >= 4 else True
        if n < 0 or (v == 0 and n == 0):
            with self.lock:
                names = sorted(self.topics)
        if v >= 3:
            w.int32(0)
        w.array(1).int32(NODE_ID).string(host).int32(port)
        if v >= 1:
            w.string(None)  # rack
        if v >= 2:
            w.string(CLUSTER_ID)
        if v >= 1:
            w.int32(NODE_ID)
        w.array(len(names))
        for name in names:
            parts = self.topic(name, create=auto)
            w.int16(0 if parts else UNKNOWN_TOPIC_OR_PARTITION).string(name)
            if v >= 1:
                w.int8(0)
            w.array(len(parts or []))
            for i in range(len(parts or [])):
                w.int16(0).int32(i).int32(NODE_ID)
                if v >= 7:
                    w.int32(0)  # leader_epoch
                w.array(1).int32(NODE_ID).array(1).int32(NODE_ID)
                if v >= 5:
                    w.array(0)  # offline_replicas
            if v >= 8:
                w.int32(-(1 << 31))
        if v >= 8:
            w.int32(-(1 << 31))
        return w.bytes()

    def _key0(self, r: Reader, w: Writer, v: int, _host: str, _port: int) -> bytes | None:  # Produce
        r.string(nullable=True)  # transactional_id
        acks = r.int16()
        r.int32()
        out = []
        for _ in range(max(r.array_len(), 0)):
            name = r.string() or ""
            parts = []
            for _ in range(max(r.array_len(), 0)):
                index = r.int32()
                n = r.int32()
                records = bytes(r._take(max(n, 0), "records"))
                logs = self.topic(name)
                if logs is None or not 0 <= index < len(logs):
                    parts.append((index, UNKNOWN_TOPIC_OR_PARTITION, -1))
                    continue
                with self.lock:
                    parts.append((index, 0, logs[index].append(records)))
            out.append((name, parts))
        if acks == 0:
            return None
        w.array(len(out))
        for name, parts in out:
            w.string(name).array(len(parts))
            for index, code, base in parts:
                w.int32(index).int16(code).int64(base).int64(-1)  # log_append_time
                if v >= 5:
                    w.int64(0)  # log_start_offset
        w.int32(0)
        return w.bytes()

    def _key1(self, r: Reader, w: Writer, v: int, _host: str, _port: int) -> bytes:  # Fetch
        r.int32(), r.int32(), r.int32(), r.int32(), r.int8()  # replica, max_wait, min_bytes, max_bytes, isolation
        if v >= 7:
            r.int32(), r.int32()
        asked = []
        for _ in range(max(r.array_len(), 0)):
            name = r.string() or ""
            parts = []
            for _ in range(max(r.array_len(), 0)):
                index = r.int32()
                if v >= 9:
                    r.int32()
                offset = r.int64()
                if v >= 5:
                    r.int64()
                parts.append((index, offset, r.int32()))
            asked.append((name, parts))
        w.int32(0)
        if v >= 7:
            w.int16(0).int32(0)
        w.array(len(asked))
        for name, parts in asked:
            w.string(name).array(len(parts))
            logs = self.topic(name, create=False)
            for index, offset, max_bytes in parts:
                log = logs[index] if logs is not None and 0 <= index < len(logs) else None
                code = UNKNOWN_TOPIC_OR_PARTITION if log is None else (
                    OFFSET_OUT_OF_RANGE if not 0 <= offset <= log.next else 0)
                with self.lock:
                    data = log.read(offset, max_bytes) if log is not None and not code else b""
                    hw = log.next if log is not None else -1
                w.int32(index).int16(code).int64(hw).int64(hw)  # high watermark, last stable offset
                if v >= 5:
                    w.int64(0)  # log_start_offset
                w.array(0)  # aborted_transactions
                if v >= 11:
                    w.int32(-1)
                w.int32(len(data)).raw(data)
        return w.bytes()

    def _key2(self, r: Reader, w: Writer, v: int, _host: str, _port: int) -> bytes:  # ListOffsets
        r.int32()
        if v >= 2:
            r.int8()
        asked = []
        for _ in range(max(r.array_len(), 0)):
            name = r.string() or ""
            parts = []
            for _ in range(max(r.array_len(), 0)):
                index = r.int32()
                if v >= 4:
                    r.int32()
                parts.append((index, r.int64()))
            asked.append((name, parts))
        if v >= 2:
            w.int32(0)
        w.array(len(asked))
        for name, parts in asked:
            w.string(name).array(len(parts))
            logs = self.topic(name, create=False)
            for index, ts in parts:
                log = logs[index] if logs is not None and 0 <= index < len(logs) else None
                offset = -1 if log is None else (0 if ts == -2 else log.next)
                w.int32(index).int16(UNKNOWN_TOPIC_OR_PARTITION if log is None else 0).int64(-1).int64(offset)
                if v >= 4:
                    w.int32(0)
        return w.bytes()


def create_topics(broker: Broker, spec: str) -> None:
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, rest = item.partition(":")
        count = int(rest.split(":")[0] or 1) if rest else 1
        broker.topics[name] = [Log() for _ in range(max(count, 1))]


def main(argv: list[str]) -> None:
    port = int(os.environ.get("KAFKA_PORT") or 9092)
    if argv[:1] == ["--port"] and len(argv) > 1:
        port = int(argv[1])
    broker = Broker(os.environ.get("KAFKA_ADVERTISED_HOST_NAME") or os.environ.get("ADVERTISED_HOST") or "")
    create_topics(broker, os.environ.get("KAFKA_CREATE_TOPICS", ""))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((runtime.listen_address(), port))
    except OSError as exc:
        runtime.fatal(f"kafka: listen on :{port}: {exc}")
    listener.listen(128)
    runtime.log(f"kafka: broker {NODE_ID} listening on :{port}")

    def accept() -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=broker.serve_conn, args=(conn,), daemon=True).start()

    runtime.run_until_terminated([accept])


if __name__ == "__main__":
    main(sys.argv[1:])
