"""A small HTTP/1.1 server for the workloads (http.server costs ~40 ms and 8 MB per process to import).

Handles keep-alive (HTTP/1.1 default, HTTP/1.0 on request), Content-Length and chunked request bodies,
``Expect: 100-continue``, HEAD, and malformed requests (400/413/414/431/501/505 and close). One daemon
thread per connection; a handler is ``Callable[[Request], Response]``.
"""

from __future__ import annotations

import errno
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs, unquote

from membrane.lab.workloads.runtime import listen_address

MAX_LINE = 16 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
IDLE_TIMEOUT = 300.0
REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 301: "Moved Permanently",
    302: "Found", 303: "See Other", 304: "Not Modified", 307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 411: "Length Required", 412: "Precondition Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 417: "Expectation Failed", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
_NO_BODY = {204, 304}
_TRANSIENT_ACCEPT_ERRORS = {errno.ECONNABORTED, errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class Request:
    """One parsed request. ``headers`` keeps the client's order and spelling; ``path`` is percent-decoded."""

    __slots__ = ("method", "target", "version", "headers", "body", "client", "path", "query_string", "host", "chunked")

    def __init__(self, method: str, target: str, version: str, headers: list[tuple[str, str]],
                 client: tuple[str, int]) -> None:
        self.method, self.target, self.version, self.headers = method, target, version, headers
        self.client = client
        self.body = b""
        self.chunked = False
        uri, host = target, None
        if "://" in target:  # absolute-form: the authority is the host
            rest = target.split("://", 1)[1]
            host, slash, tail = rest.partition("/")
            uri = slash + tail if slash else "/"
        raw_path, _, self.query_string = uri.partition("?")
        self.path = unquote(raw_path) if raw_path else "/"
        self.host = host if host is not None else (self.header("Host") or "")

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)

    def header_values(self, name: str) -> list[str]:
        lowered = name.lower()
        return [v for k, v in self.headers if k.lower() == lowered]

    @property
    def request_uri(self) -> str:
        """Path and query as sent (Go's URL.RequestURI()), also for absolute-form targets."""
        if "://" in self.target:
            rest = self.target.split("://", 1)[1]
            slash = rest.find("/")
            return rest[slash:] if slash >= 0 else "/"
        return self.target

    @property
    def remote_addr(self) -> str:
        """``ip:port`` (``[ip]:port`` for IPv6), as Go's Request.RemoteAddr."""
        ip, port = self.client[0], self.client[1]
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"

    def query(self) -> dict[str, list[str]]:
        return parse_qs(self.query_string, keep_blank_values=True)

    def arg(self, name: str, default: str = "") -> str:
        """First value of query parameter ``name``."""
        return self.query().get(name, [default])[0]

    def form_value(self, name: str) -> str:
        """Go's Request.FormValue: a urlencoded POST/PUT/PATCH body first, then the query."""
        content_type = (self.header("Content-Type") or "").split(";")[0].strip().lower()
        if self.method in ("POST", "PUT", "PATCH") and content_type == "application/x-www-form-urlencoded":
            values = parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True).get(name)
            if values:
                return values[0]
        return self.arg(name)


class Response:
    """Status, headers and a body: bytes, or an iterable of chunks with ``length`` given.

    ``after`` runs once the response has been sent (e.g. to exit the process).
    """

    __slots__ = ("status", "headers", "body", "length", "close", "after")

    def __init__(self, status: int = 200, body: bytes | Iterable[bytes] = b"",
                 headers: list[tuple[str, str]] | None = None, *, length: int | None = None,
                 close: bool = False, after: Callable[[], None] | None = None) -> None:
        self.status, self.body, self.headers = status, body, list(headers or [])
        self.length = len(body) if isinstance(body, bytes | bytearray) else length
        self.close, self.after = close, after


def text(body: str, status: int = 200, content_type: str = "text/plain; charset=utf-8", **kw: object) -> Response:
    return Response(status, body.encode(), [("Content-Type", content_type)], **kw)  # type: ignore[arg-type]


def http_date(when: float | None = None) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(when))


class BadRequest(Exception):
    def __init__(self, status: int, detail: str = "") -> None:
        super().__init__(detail or REASONS.get(status, ""))
        self.status = status


def open_tcp_listener(port: int, address: str | None = None) -> socket.socket:
    """A listening socket; on 0.0.0.0 a dual-stack [::] one where IPv6 is available (as Go listens)."""
    return _bind(socket.SOCK_STREAM, port, address)


def open_udp_socket(port: int, address: str | None = None) -> socket.socket:
    return _bind(socket.SOCK_DGRAM, port, address)


def _bind(kind: int, port: int, address: str | None) -> socket.socket:
    host = address if address else listen_address()
    if host in ("0.0.0.0", "", "::") and socket.has_ipv6:
        try:
            sock = socket.socket(socket.AF_INET6, kind)
            try:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                return _finish_bind(sock, kind, "::", port)
            except OSError:
                sock.close()
                raise
        except OSError:
            pass  # no IPv6 in this namespace: fall back to IPv4 only
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        return _finish_bind(sock, kind, "0.0.0.0" if host == "" else host, port)
    except OSError:
        sock.close()
        raise


def _finish_bind(sock: socket.socket, kind: int, host: str, port: int) -> socket.socket:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    if kind == socket.SOCK_STREAM:
        sock.listen(1024)
    return sock


def client_address(addr: tuple) -> tuple[str, int]:
    """(ip, port) with IPv4-mapped IPv6 (``::ffff:10.0.0.1``) shown as plain IPv4, as Go shows it."""
    ip = addr[0]
    if ip.startswith("::ffff:") and "." in ip:
        ip = ip[7:]
    return ip, addr[1]


Handler = Callable[[Request], Response]
AccessLog = Callable[[Request, int, int], None]


def serve(listener: socket.socket, handler: Handler, *, server: str | None = None, close_each: bool = False,
          access_log: AccessLog | None = None, error_page: Callable[[int], Response] | None = None) -> None:
    """Accept connections forever, each in its own daemon thread."""
    options = (handler, server, close_each, access_log, error_page)
    while True:
        try:
            conn, addr = listener.accept()
        except OSError as exc:
            if exc.errno in _TRANSIENT_ACCEPT_ERRORS:
                time.sleep(0.05)
                continue
            raise
        threading.Thread(target=_connection, args=(conn, client_address(addr), options), daemon=True).start()


def _connection(conn: socket.socket, client: tuple[str, int], options: tuple) -> None:
    handler, server, close_each, access_log, error_page = options
    conn.settimeout(IDLE_TIMEOUT)
    rfile = conn.makefile("rb", buffering=65536)
    try:
        while True:
            try:
                req = _read_request(rfile, conn, client)
            except BadRequest as bad:
                resp = error_page(bad.status) if error_page else text(f"{bad.status} {REASONS.get(bad.status, '')}")
                resp.status = bad.status
                _send(conn, None, resp, False, server)
                return
            if req is None:
                return
            try:
                resp = handler(req)
            except Exception:  # noqa: BLE001 - a handler bug must not kill the connection thread silently
                import traceback

                traceback.print_exc(file=sys.stderr)
                resp = error_page(500) if error_page else text("500 Internal Server Error", 500)
            keep = not close_each and not resp.close and _wants_keep_alive(req)
            keep = keep and not any(k.lower() == "connection" and v.lower() == "close" for k, v in resp.headers)
            sent = _send(conn, req, resp, keep, server)
            if access_log is not None:
                access_log(req, resp.status, sent)
            if resp.after is not None:
                resp.after()
            if not keep:
                return
    except (OSError, ValueError):
        return
    finally:
        try:
            rfile.close()
            conn.close()
        except OSError:
            pass


def _wants_keep_alive(req: Request) -> bool:
    tokens = {t.strip().lower() for v in req.header_values("Connection") for t in v.split(",")}
    if req.version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def _read_request(rfile, conn: socket.socket, client: tuple[str, int]) -> Request | None:
    line = rfile.readline(MAX_LINE + 1)
    while line in (b"\r\n", b"\n"):  # tolerate blank lines between requests
        line = rfile.readline(MAX_LINE + 1)
    if not line:
        return None
    if len(line) > MAX_LINE:
        raise BadRequest(414)
    parts = line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    if not version.startswith("HTTP/1."):
        raise BadRequest(505 if version.startswith("HTTP/") else 400)
    headers: list[tuple[str, str]] = []
    total = 0
    while True:
        raw = rfile.readline(MAX_LINE + 1)
        total += len(raw)
        if not raw:
            raise BadRequest(400, "connection closed in headers")
        if total > MAX_HEADER_BYTES or len(raw) > MAX_LINE:
            raise BadRequest(431)
        if raw in (b"\r\n", b"\n"):
            break
        decoded = raw.decode("latin-1").rstrip("\r\n")
        name, colon, value = decoded.partition(":")
        if not colon or not name or name != name.strip() or decoded[0] in " \t":
            raise BadRequest(400, "malformed header line")
        headers.append((name, value.strip(" \t")))
    req = Request(method, target, version, headers, client)
    if version == "HTTP/1.1" and req.header("Host") is None:
        raise BadRequest(400, "missing required Host header")
    _read_body(req, rfile, conn)
    return req


def _read_body(req: Request, rfile, conn: socket.socket) -> None:
    encoding = req.header("Transfer-Encoding")
    lengths = req.header_values("Content-Length")
    expects = (req.header("Expect") or "").lower() == "100-continue" and req.version == "HTTP/1.1"
    if encoding is not None:
        if encoding.strip().lower() != "chunked":
            raise BadRequest(501, f"unsupported transfer encoding {encoding!r}")
        if lengths:
            raise BadRequest(400, "both Transfer-Encoding and Content-Length")
        if expects:
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        req.chunked = True
        req.body = _read_chunked(rfile)
        return
    if not lengths:
        return
    if len(set(lengths)) != 1 or not lengths[0].isdigit():
        raise BadRequest(400, "bad Content-Length")
    size = int(lengths[0])
    if size > MAX_BODY:
        raise BadRequest(413)
    if size and expects:
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = rfile.read(size) if size else b""
    if len(body) != size:
        raise ConnectionError("client closed during body")
    req.body = body


def _read_chunked(rfile) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        line = rfile.readline(MAX_LINE + 1)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BadRequest(400, "bad chunk size") from None
        if size == 0:
            break
        total += size
        if total > MAX_BODY:
            raise BadRequest(413)
        chunk = rfile.read(size)
        if len(chunk) != size or rfile.readline(MAX_LINE + 1) not in (b"\r\n", b"\n"):
            raise BadRequest(400, "bad chunk")
        parts.append(chunk)
    while rfile.readline(MAX_LINE + 1) not in (b"\r\n", b"\n", b""):  # trailers are read and dropped
        pass
    return b"".join(parts)


def _send(conn: socket.socket, req: Request | None, resp: Response, keep: bool, server: str | None) -> int:
    status = resp.status
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    names = {k.lower() for k, _ in resp.headers}
    if server and "server" not in names:
        lines.append(f"Server: {server}")
    if "date" not in names:
        lines.append(f"Date: {http_date()}")
    lines.extend(f"{k}: {v}" for k, v in resp.headers)
    with_body = status not in _NO_BODY and status >= 200
    if with_body and "content-length" not in names:
        lines.append(f"Content-Length: {resp.length or 0}")
    if not keep and "connection" not in names:
        lines.append("Connection: close")
    elif keep and req is not None and req.version == "HTTP/1.0":
        lines.append("Connection: keep-alive")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    if not with_body or (req is not None and req.method == "HEAD"):
        conn.sendall(head)
        return 0
    if isinstance(resp.body, bytes | bytearray):
        conn.sendall(head + bytes(resp.body))
        return len(resp.body)
    conn.sendall(head)
    sent = 0
    for chunk in resp.body:
        conn.sendall(chunk)
        sent += len(chunk)
    return sent
