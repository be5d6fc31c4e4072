"""MetricsServer: ``GET /metrics`` answered from a render callable, on ``host:port`` or a unix socket."""

from __future__ import annotations

import http.client
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SOCKET_MODE = 0o660  # the local door: root and its group, like the agent's other sockets


class _Handler(BaseHTTPRequestHandler):
    server_version = "membrane-metrics"
    render: Callable[[], str]

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path not in ("/metrics", "/metrics/"):
            self._reply(404, b"404 page not found\n", "text/plain; charset=utf-8")
            return
        try:
            body = self.render().encode()
        except Exception as exc:  # a failing collector must not kill the server
            self._reply(500, f"error collecting metrics: {exc}\n".encode(), "text/plain; charset=utf-8")
            return
        self._reply(200, body, CONTENT_TYPE)

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # scrapes are not worth a log line
        return

    def address_string(self) -> str:  # unix sockets have no (host, port) peer
        return self.client_address[0] if isinstance(self.client_address, tuple) else "unix"


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        conn, _ = super().get_request()
        return conn, ("unix", 0)


class MetricsServer:
    """Serve ``render()`` at ``/metrics``. ``address``: ``(host, port)`` (port 0 = ephemeral) or a socket path.

    ``start()`` runs it in a daemon thread; ``close()`` stops it and removes the socket file.
    """

    def __init__(self, address: tuple[str, int] | str, render: Callable[[], str]) -> None:
        handler = type("MetricsHandler", (_Handler,), {"render": staticmethod(render)})
        self.unix_path = address if isinstance(address, str) else None
        if self.unix_path is not None:
            if os.path.exists(self.unix_path):
                os.unlink(self.unix_path)
            self.httpd: socketserver.BaseServer = _UnixHTTPServer(self.unix_path, handler)
            os.chmod(self.unix_path, SOCKET_MODE)
        else:
            server = ThreadingHTTPServer(address, handler)
            server.daemon_threads = True
            self.httpd = server
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int] | str:
        """The bound address: the socket path, or ``(host, port)`` with the real port."""
        if self.unix_path is not None:
            return self.unix_path
        host, port = self.httpd.server_address[:2]  # type: ignore[misc]
        return str(host), int(port)

    def start(self) -> MetricsServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="metrics-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.httpd.server_close()
        if self.unix_path is not None and os.path.exists(self.unix_path):
            os.unlink(self.unix_path)

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
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


def fetch_metrics(address: tuple[str, int] | str, timeout: float = 5.0, path: str = "/metrics") -> str:
    """GET ``/metrics`` from ``(host, port)``, ``host:port``, ``http://host:port`` or a unix socket path."""
    if isinstance(address, str) and not address.startswith("/"):
        hostport = address.removeprefix("http://").split("/", 1)[0]
        host, _, port = hostport.rpartition(":")
        address = (host.strip("[]") or "127.0.0.1", int(port))
    conn: http.client.HTTPConnection
    if isinstance(address, str):
        conn = _UnixConnection(address, timeout)
    else:
        conn = http.client.HTTPConnection(address[0], address[1], timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read().decode()
        if resp.status != 200:
            raise OSError(f"GET {path}: HTTP {resp.status}: {body.strip()}")
        return body
    finally:
        conn.close()
