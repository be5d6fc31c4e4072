"""The plugin's one HTTP request to the agent, over its unix socket, with ``socket`` and ``json`` only.

``http.client`` costs the plugin ~60 ms of imports (email parsing, ssl) on every pod start for one
POST; this sends ``POST <path> HTTP/1.1`` with ``Connection: close`` and reads the status line, the
headers and ``Content-Length`` bytes of body (or up to EOF without one).
"""

from __future__ import annotations

import json
import socket

MAX_REPLY = 16 << 20  # bytes; an agent reply is a few KiB


class AgentReplyError(Exception):
    """A non-2xx answer; ``body`` is the decoded JSON error object (None when there was no body)."""

    def __init__(self, status: int, body: object) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


def _read_reply(sock: socket.socket) -> tuple[int, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ValueError("connection closed before the end of the reply headers")
        buf += chunk
        if len(buf) > MAX_REPLY:
            raise ValueError("reply headers too long")
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"bad status line {lines[0][:80]!r}")
    status = int(parts[1])
    length = -1
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            if not value.strip().isdigit():
                raise ValueError(f"bad Content-Length {value.strip()[:40]!r}")
            length = int(value)
        elif name.strip().lower() == "transfer-encoding" and value.strip().lower() != "identity":
            raise ValueError(f"unsupported Transfer-Encoding {value.strip()[:40]!r}")
    while length < 0 or len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            if length < 0:
                break
            raise ValueError(f"connection closed after {len(body)} of {length} body bytes")
        body += chunk
        if len(body) > MAX_REPLY:
            raise ValueError("reply body too long")
    return status, body if length < 0 else body[:length]


def post_json(socket_path: str, path: str, body: object, timeout: float) -> object:
    """POST ``body`` as JSON; the decoded JSON reply (None when empty). Raises OSError when the agent is
    unreachable or times out, AgentReplyError on a non-2xx status, ValueError on a malformed reply."""
    payload = json.dumps(body).encode()
    request = (f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode() + payload
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(request)
        status, raw = _read_reply(sock)
    data = json.loads(raw) if raw else None
    if not 200 <= status < 300:
        raise AgentReplyError(status, data)
    return data
