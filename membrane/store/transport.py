"""HTTP/1.1 + JSON to etcd's v3 gateway over a unix socket or TCP, standard library only.

Requests reuse a small pool of keep-alive connections; every failure becomes a ``StoreError`` (or
``StoreUnavailable`` when etcd could not be reached) whose message names the endpoint.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from dataclasses import dataclass
from typing import Any

from membrane.store.errors import LeaseNotFound, RevisionCompacted, StoreError, StoreUnavailable

UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL
DEFAULT_PORT = 2379
_POOL_SIZE = 4
# gRPC status codes etcd's gateway reports in {"code": n}.
_GRPC_NOT_FOUND = 5
_GRPC_OUT_OF_RANGE = 11
_GRPC_UNAVAILABLE = 14
_GRPC_DEADLINE_EXCEEDED = 4
_UNAVAILABLE_MESSAGES = ("request timed out", "no leader", "leader changed", "not capable", "stopped")


@dataclass(frozen=True)
class Endpoint:
    """Where etcd listens: ``unix:///abs/path/etcd.sock:2379`` or ``http://host:port``."""

    url: str
    unix_path: str = ""
    host: str = ""
    port: int = 0


def parse_endpoint(url: str) -> Endpoint:
    """Parse an endpoint URL; raises ValueError saying what is wrong with it."""
    if url.startswith("unix://"):
        path = url[len("unix://"):]
        if not path.startswith("/"):
            raise ValueError(f"etcd endpoint {url!r}: unix socket path must be absolute (unix:///path/etcd.sock:2379)")
        if len(path.encode()) > UNIX_PATH_MAX:
            raise ValueError(f"etcd endpoint {url!r}: unix socket path is longer than {UNIX_PATH_MAX} bytes")
        return Endpoint(url=url, unix_path=path)
    if url.startswith("http://"):
        rest = url[len("http://"):].rstrip("/")
        if not rest or "/" in rest:
            raise ValueError(f"etcd endpoint {url!r}: expected http://host:port")
        host, port = rest, DEFAULT_PORT
        if rest.startswith("["):  # [v6]:port
            close = rest.find("]")
            if close < 0:
                raise ValueError(f"etcd endpoint {url!r}: unbalanced '[' in IPv6 address")
            host, tail = rest[1:close], rest[close + 1:]
            if tail:
                if not tail.startswith(":"):
                    raise ValueError(f"etcd endpoint {url!r}: expected :port after the IPv6 address")
                port = _parse_port(url, tail[1:])
        elif ":" in rest:
            host, raw_port = rest.rsplit(":", 1)
            port = _parse_port(url, raw_port)
        return Endpoint(url=url, host=host, port=port)
    raise ValueError(f"etcd endpoint {url!r}: scheme must be unix:// or http://")


def _parse_port(url: str, raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"etcd endpoint {url!r}: port {raw!r} is not a number in 1-65535")
    return int(raw)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = connect_socket(Endpoint(url="", unix_path=self._path), self.timeout)


def connect_socket(endpoint: Endpoint, timeout: float | None) -> socket.socket:
    """A connected stream socket to the endpoint (raises OSError)."""
    if endpoint.unix_path:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(endpoint.unix_path)
        except OSError:
            sock.close()
            raise
        return sock
    sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def unavailable(endpoint: Endpoint, what: str, exc: BaseException, timeout: float) -> StoreUnavailable:
    """Turn a transport-level failure into a StoreUnavailable that says where and why."""
    if isinstance(exc, TimeoutError | socket.timeout):
        why = f"timed out after {timeout:g}s"
    elif isinstance(exc, FileNotFoundError):
        why = f"socket {endpoint.unix_path} does not exist (is etcd running?)"
    elif isinstance(exc, ConnectionRefusedError):
        why = "connection refused (is etcd running?)"
    elif isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError):
        why = "connection closed by etcd"
    else:
        why = f"{type(exc).__name__}: {exc}"
    return StoreUnavailable(f"etcd {endpoint.url}: {what}: {why}")


def error_from_body(endpoint: Endpoint, what: str, status: int, body: Any) -> StoreError:
    """Map an error answer of the gateway ({"error", "message", "code"}) onto our exception types."""
    if isinstance(body, dict):
        message = str(body.get("message") or body.get("error") or body)
        code = int(body.get("code") or body.get("grpc_code") or 0)
    else:
        message, code = str(body), 0
    text = f"etcd {endpoint.url}: {what}: {message}"
    if code == _GRPC_OUT_OF_RANGE or "compacted" in message:
        return RevisionCompacted(text, 0)
    if code == _GRPC_NOT_FOUND and "lease not found" in message:
        return LeaseNotFound(text)
    if code in (_GRPC_UNAVAILABLE, _GRPC_DEADLINE_EXCEEDED) or status in (502, 503, 504) or any(
        m in message for m in _UNAVAILABLE_MESSAGES
    ):
        return StoreUnavailable(text)
    return StoreError(f"{text} (HTTP {status}, code {code})")


class Transport:
    """JSON POSTs to one etcd endpoint; thread-safe (each call holds its own connection)."""

    def __init__(self, endpoint: str, timeout: float = 5.0) -> None:
        self.endpoint = parse_endpoint(endpoint)
        self.timeout = timeout
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _new_connection(self) -> http.client.HTTPConnection:
        if self.endpoint.unix_path:
            return _UnixConnection(self.endpoint.unix_path, self.timeout)
        return http.client.HTTPConnection(self.endpoint.host, self.endpoint.port, timeout=self.timeout)

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._new_connection(), False

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < _POOL_SIZE:
                self._idle.append(conn)
                return
        conn.close()

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` as JSON to ``path``; returns the decoded answer or raises StoreError."""
        payload = json.dumps(body).encode()
        conn, reused = self._take()
        try:
            status, raw, keep = self._roundtrip(conn, path, payload)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
            conn.close()
            if not reused:
                raise unavailable(self.endpoint, path, exc, self.timeout) from None
            # A pooled connection etcd closed while idle (e.g. it restarted): the request never
            # reached it, so sending it again on a fresh connection is safe.
            conn = self._new_connection()
            try:
                status, raw, keep = self._roundtrip(conn, path, payload)
            except (OSError, http.client.HTTPException) as exc2:
                conn.close()
                raise unavailable(self.endpoint, path, exc2, self.timeout) from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise unavailable(self.endpoint, path, exc, self.timeout) from None
        if keep:
            self._give_back(conn)
        else:
            conn.close()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = raw.decode(errors="replace")
        if status != 200:
            raise error_from_body(self.endpoint, path, status, data)
        if not isinstance(data, dict):
            raise StoreError(f"etcd {self.endpoint.url}: {path}: unexpected answer {data!r:.200}")
        return data

    @staticmethod
    def _roundtrip(conn: http.client.HTTPConnection, path: str, payload: bytes) -> tuple[int, bytes, bool]:
        conn.request("POST", path, body=payload, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, raw, not resp.will_close

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
