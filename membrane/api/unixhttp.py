"""HTTP/1.1 over a unix socket with the standard library only.

The CNI plugin, the CLI and the lab talk to agents (and to etcd's JSON gateway) through sockets under
``/run/membrane/<lab>/``; unix sockets reach daemons inside other network namespaces without any route.
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any


class UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTPConnection whose transport is a unix stream socket."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class APIError(Exception):
    """A non-2xx answer; ``body`` is the decoded JSON error object when there is one."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        msg = body.get("msg") or body.get("error") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {msg}")


def request_json(
    socket_path: str, method: str, path: str, body: Any = None, timeout: float = 10.0
) -> Any:
    """One JSON request/response. Raises OSError when the socket is unreachable, APIError on non-2xx."""
    conn = UnixHTTPConnection(socket_path, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    data: Any = json.loads(raw) if raw else None
    if not 200 <= resp.status < 300:
        raise APIError(resp.status, data)
    return data
