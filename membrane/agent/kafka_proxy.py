"""The node's Kafka proxy: one client connection relayed to the broker it asked for, request by request.

Each request frame is parsed (membrane.kafka.protocol) and checked against the ``kafka:`` rules that
``rules_of(client, local)`` gives for this connection (the rules of the port, for the client's
identity). An allowed request goes to the broker unchanged; a denied one is answered by the proxy with
error 29 TOPIC_AUTHORIZATION_FAILED on each of its topics (membrane.kafka.responses) and the connection
stays up. Kafka answers in request order, so a synthesized answer waits behind the broker answers of
the requests before it. A request that cannot be parsed, a denied one that cannot be answered with
error 29, or a frame over 100 MiB closes the connection (both sides). Every request calls ``emit``.
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from membrane.kafka.protocol import (
    TOPIC_AUTHORIZATION_FAILED,
    KafkaError,
    Request,
    parse_request,
    split_frames,
)
from membrane.kafka.responses import error_response, metadata_without_topics, splice_denied_metadata
from membrane.kafka.rules import KafkaRule, denied_topics

log = logging.getLogger(__name__)

Addr = tuple[str, int]
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class KafkaRecord:
    """One L7 Kafka observation (Hubble ``l7.kafka``)."""

    verdict: str  # FORWARDED | DROPPED
    api_key: str
    api_version: int
    correlation_id: int
    topic: str
    error_code: int = 0
    client: Addr = ("", 0)
    server: Addr = ("", 0)

    def summary(self) -> str:
        return f"Kafka request {self.api_key} correlation id {self.correlation_id} topic '{self.topic}'"


class KafkaConnection:
    """Relays one accepted client socket; :meth:`run` returns when either side is done."""

    def __init__(self, client: socket.socket, rules: tuple[KafkaRule, ...], upstream: Addr,
                 emit: Callable[[KafkaRecord], None] = lambda _r: None) -> None:
        self.client = client
        self.rules = rules
        self.upstream = upstream
        self.emit = emit
        self.peer: Addr = client.getpeername()[:2]
        self._lock = threading.Lock()
        # in request order: None = the broker's answer is due; bytes = the proxy's own answer; a function =
        # the broker's answer is due and is rewritten by it (a denied Metadata request)
        self._pending: collections.deque[bytes | Callable[[bytes], bytes] | None] = collections.deque()
        self._broker: socket.socket | None = None
        self.closed_reason = ""

    def run(self) -> None:
        try:
            self._broker = socket.create_connection(self.upstream, timeout=CONNECT_TIMEOUT)
            self._broker.settimeout(None)
        except OSError as exc:
            log.info("kafka proxy: broker %s:%d unreachable: %s", *self.upstream, exc)
            self.client.close()
            return
        relay = threading.Thread(target=self._from_broker, name="kafka-proxy-broker", daemon=True)
        relay.start()
        try:
            self._from_client()
        finally:
            self._close()
            relay.join(timeout=5)

    def _close(self) -> None:
        for s in (self.client, self._broker):
            if s is None:
                continue
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _from_client(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = self.client.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            try:
                frames, buffer = split_frames(buffer + chunk)
                for frame in frames:
                    if not self._request(parse_request(frame)):
                        return
            except KafkaError as exc:
                self.closed_reason = str(exc)
                log.info("kafka proxy: %s:%d: %s: connection closed", *self.peer, exc)
                return

    def _request(self, req: Request) -> bool:
        """Forward or answer one request; False closes the connection."""
        denied = denied_topics(self.rules, req)
        topic = (denied or req.topic_names or ("",))[0]
        if denied is None:
            self.emit(KafkaRecord("FORWARDED", req.api_name, req.api_version, req.correlation_id, topic,
                                  client=self.peer, server=self.upstream))
            with self._lock:
                if req.expects_response:
                    self._pending.append(None)
                assert self._broker is not None
                self._broker.sendall(req.frame)
            return True
        self.emit(KafkaRecord("DROPPED", req.api_name, req.api_version, req.correlation_id, topic,
                              TOPIC_AUTHORIZATION_FAILED, self.peer, self.upstream))
        ask = metadata_without_topics(req)
        if ask is not None:  # the broker's list, with the denied topics spliced in
            with self._lock:
                self._pending.append(lambda frame: splice_denied_metadata(req, frame))
                assert self._broker is not None
                self._broker.sendall(ask)
            return True
        answer = error_response(req)
        if answer is None:
            self.closed_reason = f"{req.api_name} denied and not answerable with error 29"
            log.info("kafka proxy: %s:%d: %s: connection closed", *self.peer, self.closed_reason)
            return False
        if req.expects_response:
            with self._lock:
                self._pending.append(answer)
                self._flush()
        return True

    def _flush(self) -> None:
        """Send the synthesized answers at the head of the queue (the caller holds the lock)."""
        while self._pending and isinstance(self._pending[0], bytes):
            self.client.sendall(self._pending.popleft())  # type: ignore[arg-type]

    def _from_broker(self) -> None:
        assert self._broker is not None
        buffer = b""
        try:
            while True:
                chunk = self._broker.recv(65536)
                if not chunk:
                    break
                frames, buffer = split_frames(buffer + chunk)
                with self._lock:
                    for frame in frames:
                        due = self._pending.popleft() if self._pending else None
                        self.client.sendall(due(frame) if callable(due) else frame)
                        self._flush()
        except (OSError, KafkaError) as exc:
            log.debug("kafka proxy: broker side of %s:%d ended: %s", *self.peer, exc)
        try:
            self.client.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def serve(listener: socket.socket, rules_of: Callable[[Addr, Addr], tuple[KafkaRule, ...] | None],
          upstream_of: Callable[[Addr, Addr], Addr], emit: Callable[[KafkaRecord], None] = lambda _r: None,
          stop: threading.Event | None = None) -> None:
    """Accept connections until the listener is closed (or ``stop`` is set); one thread per connection.
    ``rules_of`` None: the connection is not one the proxy serves; it is closed."""
    while stop is None or not stop.is_set():
        try:
            conn, client = listener.accept()
        except OSError:
            return
        local = conn.getsockname()[:2]
        rules = rules_of(client[:2], local)
        if rules is None:
            conn.close()
            continue
        kc = KafkaConnection(conn, rules, upstream_of(client[:2], local), emit)
        threading.Thread(target=kc.run, name="kafka-proxy", daemon=True).start()
