"""The agent's local REST API on a unix socket (``/run/membrane/<lab>/agent-<node>.sock``).

Routes are plain functions taking the decoded JSON body and returning a JSON-able answer; a raised
``APIFailure`` becomes an error object with a status code. The CNI plugin, the CLI and the lab use it.
"""

from __future__ import annotations

import json
import logging
import os
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[Any], Any]


class APIFailure(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("msg", ""))
        self.status = status
        self.body = body


class RawReply:
    """A route's answer sent as is (``application/octet-stream``) with extra headers, instead of JSON."""

    def __init__(self, body: bytes, headers: dict[str, str]) -> None:
        self.body = body
        self.headers = headers


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    routes: dict[tuple[str, str], Handler]


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def address_string(self) -> str:  # unix sockets have no peer address
        return "local"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature from the base class
        log.debug("api: " + format, *args)

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        handler = self.server.routes.get((method, path))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if handler is None:
            self._reply(404, {"msg": f"no route {method} {path}"})
            return
        try:
            body = json.loads(raw) if raw else None
        except ValueError as exc:
            self._reply(400, {"code": 6, "msg": "decoding request failed", "details": str(exc)})
            return
        try:
            self._reply(200, handler(body))
        except APIFailure as fail:
            self._reply(fail.status, fail.body)
        except Exception as exc:
            log.exception("api %s %s failed", method, path)
            self._reply(500, {"code": 999, "msg": f"internal error: {exc}"})

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _reply(self, status: int, data: Any) -> None:
        raw = isinstance(data, RawReply)
        payload = data.body if raw else json.dumps(data).encode()
        self.send_response(status)
        for name, value in data.headers.items() if raw else ():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/octet-stream" if raw else "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class APIServer:
    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.routes: dict[tuple[str, str], Handler] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler

    def start(self) -> None:
        os.makedirs(os.path.dirname(self.socket_path), exist_ok=True)
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        server = _Server(self.socket_path, _RequestHandler)
        server.routes = self.routes
        os.chmod(self.socket_path, 0o660)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="api", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
