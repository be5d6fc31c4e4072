"""A streaming etcd watch over the JSON gateway (``POST /v3/watch``, chunked newline-delimited JSON).

The stream is read from a raw socket so that reads can time out without losing buffered data and
``cancel()`` from another thread can stop a blocked reader at once (by shutting the socket down).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from membrane.store.errors import RevisionCompacted, StoreError, WatchDisconnected
from membrane.store.kv import KV, as_int, encode_key, kv_from_json, prefix_range_end
from membrane.store.transport import Transport, connect_socket, error_from_body, unavailable

_RECV_SIZE = 65536
_MAX_HEADER = 65536


@dataclass(frozen=True)
class WatchEvent:
    """One change: ``type`` is "PUT" or "DELETE"; for deletes ``kv`` carries only the key."""

    type: str
    kv: KV
    revision: int
    prev_kv: KV | None = None


class Watch:
    """An open watch on a key or prefix. Iterate it for events; ``cancel()`` ends the iteration.

    Raises ``RevisionCompacted`` when the start revision is gone, ``WatchDisconnected`` when the
    stream breaks. ``next_revision`` is where a new watch must start to miss nothing.
    """

    def __init__(self, transport: Transport, key: str, start_revision: int | None = None,
                 prefix: bool = True, prev_kv: bool = False) -> None:
        self._endpoint = transport.endpoint
        self._timeout = transport.timeout
        self._what = f"watch {key!r}"
        self._lock = threading.Lock()
        self._cancelled = False
        self._finished = False
        self._raw = b""
        self._data = b""
        self._chunked = False
        self._chunk_data_left = 0
        self._chunk_crlf_left = 0
        self._eof = False
        self._pending: list[dict[str, Any]] = []
        self.start_revision = start_revision
        self.next_revision = start_revision or 0
        self.created_revision = 0
        request: dict[str, Any] = {"key": encode_key(key)}
        if prefix:
            request["range_end"] = prefix_range_end(key)
        if start_revision:
            request["start_revision"] = str(start_revision)
        if prev_kv:
            request["prev_kv"] = True
        try:
            self._sock = connect_socket(self._endpoint, self._timeout)
        except OSError as exc:
            raise unavailable(self._endpoint, self._what, exc, self._timeout) from None
        try:
            self._open(json.dumps({"create_request": request}).encode())
        except BaseException:
            self._sock.close()
            raise

    # -- public -------------------------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Stop the watch; safe from any thread, wakes a blocked reader promptly."""
        with self._lock:
            self._cancelled = True
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.cancel()
        self._sock.close()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[WatchEvent]:
        for batch in self.batches():
            yield from batch

    def batches(self) -> Iterator[list[WatchEvent]]:
        """Each etcd watch response's events as one list (a transaction's events stay together)."""
        while True:
            batch = self.next_batch()
            if batch is None:
                return
            if batch:
                yield batch

    def next_batch(self, timeout: float | None = None) -> list[WatchEvent] | None:
        """The next events; ``[]`` if ``timeout`` passed (or etcd sent only progress), ``None`` once cancelled."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._cancelled:
                return None
            msg = self._next_message(deadline)
            if msg is None:
                return None if self._cancelled else []
            events = self._handle(msg)
            if events is not None:
                return events

    # -- protocol -----------------------------------------------------------------------------

    def _open(self, body: bytes) -> None:
        head = (
            "POST /v3/watch HTTP/1.1\r\nHost: etcd\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        deadline = time.monotonic() + self._timeout
        try:
            self._sock.sendall(head + body)
            while b"\r\n\r\n" not in self._raw:
                if len(self._raw) > _MAX_HEADER:
                    raise StoreError(f"etcd {self._endpoint.url}: {self._what}: response header too large")
                if not self._recv(deadline):
                    raise WatchDisconnected(f"etcd {self._endpoint.url}: {self._what}: closed before answering")
        except (OSError, TimeoutError) as exc:
            raise unavailable(self._endpoint, self._what, exc, self._timeout) from None
        header, self._raw = self._raw.split(b"\r\n\r\n", 1)
        lines = header.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        self._chunked = "chunked" in fields.get("transfer-encoding", "").lower()
        self._decode()
        if status != 200:
            try:
                while not self._eof and self._recv(deadline):
                    self._decode()
            except OSError:
                pass  # report what arrived
            try:
                body_json: Any = json.loads(self._data.split(b"\n")[0] or b"{}")
            except ValueError:
                body_json = self._data.decode(errors="replace")
            raise error_from_body(self._endpoint, self._what, status, body_json)
        # Wait for the "created" answer so that events written after watch() returns are seen.
        while not self.created_revision:
            msg = self._next_message(deadline)
            if msg is None:
                raise unavailable(self._endpoint, self._what, TimeoutError(), self._timeout)
            result = msg.get("result") or {}
            if result.get("created") and not result.get("canceled"):
                self.created_revision = as_int((result.get("header") or {}).get("revision")) or 1
                if not self.start_revision:
                    self.next_revision = self.created_revision + 1
            else:
                self._pending.append(msg)  # handled (raised) by the first next_batch()
                if result.get("canceled") or "error" in msg:
                    break

    def _recv(self, deadline: float | None) -> bool:
        """Read more bytes into the raw buffer; False on end of stream, raises TimeoutError at the deadline."""
        if deadline is None:
            self._sock.settimeout(None)
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError()
            self._sock.settimeout(left)
        data = self._sock.recv(_RECV_SIZE)
        if not data:
            self._eof = True
            return False
        self._raw += data
        return True

    def _decode(self) -> None:
        """Move payload bytes from the raw buffer to the data buffer, undoing chunked encoding."""
        if not self._chunked:
            self._data += self._raw
            self._raw = b""
            return
        raw = self._raw
        while raw:
            if self._chunk_data_left:
                take = raw[: self._chunk_data_left]
                self._data += take
                self._chunk_data_left -= len(take)
                raw = raw[len(take):]
            elif self._chunk_crlf_left:
                skip = min(self._chunk_crlf_left, len(raw))
                self._chunk_crlf_left -= skip
                raw = raw[skip:]
            else:
                end = raw.find(b"\r\n")
                if end < 0:
                    break
                size_text = raw[:end].split(b";")[0].strip()
                raw = raw[end + 2:]
                size = int(size_text, 16) if size_text else 0
                if size == 0:
                    self._eof = True  # last chunk; trailers follow and are ignored
                    raw = b""
                    break
                self._chunk_data_left, self._chunk_crlf_left = size, 2
        self._raw = raw

    def _next_message(self, deadline: float | None) -> dict[str, Any] | None:
        """The next decoded JSON object, None on timeout or cancel; raises on a broken stream."""
        if self._pending:
            return self._pending.pop(0)
        while True:
            line, sep, rest = self._data.partition(b"\n")
            if sep:
                self._data = rest
                if line.strip():
                    return self._parse(line)
                continue
            if self._eof:
                if self._data.strip():
                    line, self._data = self._data, b""
                    return self._parse(line)
                if self._cancelled:
                    return None
                raise WatchDisconnected(f"etcd {self._endpoint.url}: {self._what}: stream ended (etcd stopped?)")
            try:
                self._recv(deadline)
            except TimeoutError:
                return None
            except OSError as exc:
                if self._cancelled:
                    return None
                raise WatchDisconnected(f"etcd {self._endpoint.url}: {self._what}: {exc}") from None
            self._decode()

    def _parse(self, line: bytes) -> dict[str, Any]:
        try:
            msg = json.loads(line)
        except ValueError:
            raise StoreError(f"etcd {self._endpoint.url}: {self._what}: bad message {line[:200]!r}") from None
        if not isinstance(msg, dict):
            raise StoreError(f"etcd {self._endpoint.url}: {self._what}: bad message {line[:200]!r}")
        return msg

    def _handle(self, msg: dict[str, Any]) -> list[WatchEvent] | None:
        """Events of one message ([] for progress); raises for errors and server-side cancellation."""
        if "error" in msg:
            err = msg["error"]
            message = err.get("message", err) if isinstance(err, dict) else err
            if self._cancelled:
                return []
            raise WatchDisconnected(f"etcd {self._endpoint.url}: {self._what}: {message}")
        result = msg.get("result") or {}
        header_rev = as_int((result.get("header") or {}).get("revision"))
        if result.get("canceled"):
            compact = as_int(result.get("compact_revision"))
            if compact:
                raise RevisionCompacted(
                    f"etcd {self._endpoint.url}: {self._what}: revision {self.next_revision} has been compacted "
                    f"(oldest available {compact}); re-list and watch again", compact)
            if self._cancelled:
                return []
            reason = result.get("cancel_reason") or "cancelled by etcd"
            raise StoreError(f"etcd {self._endpoint.url}: {self._what}: {reason}")
        raw_events = result.get("events") or []
        if not raw_events:
            if header_rev and not result.get("created"):
                # A progress notification: everything up to header_rev has been delivered.
                self.next_revision = max(self.next_revision, header_rev + 1)
            return []
        events = []
        for ev in raw_events:
            kv = kv_from_json(ev.get("kv") or {})
            prev = kv_from_json(ev["prev_kv"]) if ev.get("prev_kv") else None
            events.append(WatchEvent(ev.get("type") or "PUT", kv, kv.mod_revision, prev))
        self.next_revision = max(self.next_revision, events[-1].revision + 1)
        return events
