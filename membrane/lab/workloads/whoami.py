"""traefik/whoami: tells who it is and echoes the request back.

``GET /`` (and every path not below) answers ``Name:`` (if set), ``Hostname:``, one ``IP:`` line per address
of the pod's interfaces, ``RemoteAddr:``, then the request as Go's Request.Write prints it (request line,
Host, User-Agent, length, the other headers sorted, blank line, body). ``/api`` is the same as JSON,
``/health`` answers the status code last POSTed to it (200 at start), ``/bench`` answers ``1``,
``/data?size=N&unit=KB`` streams N bytes. Flags: ``--port`` (env WHOAMI_PORT_NUMBER, default 80),
``--name`` (env WHOAMI_NAME), ``--verbose``, ``--allowed-origins``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from membrane.lab.workloads import httpcore, runtime
from membrane.lab.workloads.flags import FlagError, parse_bool, parse_flags
from membrane.lab.workloads.gocompat import canonical_header_key, parse_duration
from membrane.lab.workloads.httpcore import Request, Response
from membrane.lab.workloads.netaddrs import interface_addresses

_CHARSET = b"-ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_UNITS = {"kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40}
_EXCLUDED = {"Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer"}


class Whoami:
    def __init__(self, name: str, allowed_origins: str, verbose: bool) -> None:
        self.name, self.allowed_origins, self.verbose = name, allowed_origins, verbose
        self._health = 200
        self._lock = threading.Lock()

    def handle(self, req: Request) -> Response:
        route = {"/data": self.data, "/echo": self.echo, "/bench": self.bench, "/api": self.api,
                 "/health": self.health}.get(req.path, self.whoami)
        resp = route(req)
        if self.verbose:
            stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z")
            runtime.log(f'{req.remote_addr} - - [{stamp}] "{req.method} {req.path} {req.version}" - -')
        return resp

    def whoami(self, req: Request) -> Response:
        _maybe_wait(req)
        out = bytearray()
        if self.name:
            out += f"Name: {self.name}\n".encode()
        out += f"Hostname: {runtime.hostname()}\n".encode()
        for ip in interface_addresses():
            out += f"IP: {ip}\n".encode()
        out += f"RemoteAddr: {req.remote_addr}\n".encode()
        out += request_dump(req)
        if _truthy(req.arg("env")):
            out += "".join(f"{k}={v}\n" for k, v in os.environ.items()).encode()
        return Response(200, bytes(out), [("Content-Type", "text/plain; charset=utf-8")])

    def api(self, req: Request) -> Response:
        data: dict[str, object] = {
            "hostname": runtime.hostname(),
            "ip": interface_addresses(),
            "headers": {k: [_wire_text(v) for v in vs] for k, vs in sorted(_go_header(req).items())},
            "url": _wire_text(req.request_uri),
            "host": _wire_text(req.host),
            "method": req.method,
            "name": self.name,
            "remoteAddr": req.remote_addr,
            "environ": dict(sorted(os.environ.items())) if _truthy(req.arg("env")) else {},
        }
        body = _go_json({k: v for k, v in data.items() if v}) + "\n"  # omitempty
        headers = [("Access-Control-Allow-Methods", "*"), ("Access-Control-Allow-Origin", self.allowed_origins),
                   ("Content-Type", "application/json")]
        return Response(200, body.encode(), headers)

    def health(self, req: Request) -> Response:
        if req.method == "POST":
            try:
                code = json.loads(req.body)
                if isinstance(code, bool) or not isinstance(code, int):
                    raise ValueError(f"json: cannot unmarshal {type(code).__name__} into Go value of type int")
            except ValueError as exc:
                return httpcore.text(f"{exc}\n", 400)
            print(f"Update health check status code [{code}]", flush=True)
            with self._lock:
                self._health = code
            return Response(200)
        with self._lock:
            code = self._health
        return Response(code if 100 <= code <= 999 else 500)

    def bench(self, req: Request) -> Response:
        return Response(200, b"1", [("Connection", "keep-alive"), ("Content-Type", "text/plain")])

    def echo(self, req: Request) -> Response:
        # The real /echo is a WebSocket echo; without an upgrade gorilla answers exactly this.
        return httpcore.text("Bad Request\n", 400)

    def data(self, req: Request) -> Response:
        try:
            size = max(int(req.arg("size", "1")), 0)
        except ValueError:
            size = 1
        size *= _UNITS.get(req.arg("unit").lower(), 1)
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        if _truthy(req.arg("attachment")):
            headers.append(("Content-Disposition", "Attachment"))
        length = size if size > 1 else 0
        return Response(200, _content(length), headers, length=length)


def request_dump(req: Request) -> bytes:
    """The request as Go's (*http.Request).Write renders a server-side request."""
    lines = [f"{req.method} {req.request_uri} HTTP/1.1", f"Host: {req.host}"]
    agents = req.header_values("User-Agent")
    agent = agents[0] if agents else "Go-http-client/1.1"
    if agent:
        lines.append(f"User-Agent: {agent}")
    if req.chunked:
        lines.append("Transfer-Encoding: chunked")
    elif req.body or req.method not in ("GET", "HEAD"):
        lines.append(f"Content-Length: {len(req.body)}")
    header = _go_header(req)
    for key in sorted(header):
        if key not in _EXCLUDED:
            lines.extend(f"{key}: {value}" for value in header[key])
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    if req.chunked:
        body = (f"{len(req.body):x}\r\n".encode() + req.body + b"\r\n" if req.body else b"") + b"0\r\n\r\n"
        return head + body
    return head + req.body


def _go_header(req: Request) -> dict[str, list[str]]:
    """http.Header of a server request: canonical keys, values in order, Host removed."""
    header: dict[str, list[str]] = {}
    for key, value in req.headers:
        canonical = canonical_header_key(key)
        if canonical != "Host":
            header.setdefault(canonical, []).append(value)
    return header


def _wire_text(value: str) -> str:
    """Request text is read as latin-1 (byte for byte); Go sees those bytes as UTF-8."""
    return value if value.isascii() else value.encode("latin-1", "replace").decode("utf-8", "replace")


def _go_json(value: object) -> str:
    """encoding/json output: compact, <>& and U+2028/2029 escaped (callers sort map keys, as Go does)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def _content(size: int):
    """traefik/whoami's /data content: ``|`` + the -A…Z charset cycling by position + ``|``."""
    block = _CHARSET * ((65536 // len(_CHARSET)) + 2)
    for start in range(0, size, 65536):
        end = min(start + 65536, size)
        offset = start % len(_CHARSET)
        chunk = bytearray(block[offset : offset + end - start])
        if start == 0:
            chunk[0:1] = b"|"
        if end == size:
            chunk[-1:] = b"|"
        yield bytes(chunk)


def _truthy(value: str) -> bool:
    try:
        return parse_bool(value)
    except ValueError:
        return False


def _maybe_wait(req: Request) -> None:
    wait = req.arg("wait")
    if wait:
        try:
            time.sleep(max(parse_duration(wait), 0.0))
        except ValueError:
            pass


def main(argv: list[str]) -> None:
    defaults = {
        "port": os.environ.get("WHOAMI_PORT_NUMBER") or "80",
        "name": os.environ.get("WHOAMI_NAME", ""),
        "verbose": False,
        "cert": "",
        "key": "",
        "cacert": "",
        "allowed-origins": os.environ.get("WHOAMI_ALLOWED_ORIGINS") or "*",
    }
    try:
        flags = parse_flags(argv, defaults)
        port = int(flags["port"])
    except (FlagError, ValueError) as exc:
        print(f"whoami: {exc}", file=sys.stderr)
        sys.exit(2)
    if flags["cert"] or flags["key"]:
        runtime.fatal("whoami: TLS (--cert/--key) is not supported by the lab's built-in whoami")
    app = Whoami(flags["name"], flags["allowed-origins"], flags["verbose"])
    try:
        listener = httpcore.open_tcp_listener(port)
    except OSError as exc:
        runtime.fatal(f"listen tcp :{port}: bind: {exc.strerror}")
    runtime.log(f"Starting up on port {port}")
    runtime.run_until_terminated([lambda: httpcore.serve(listener, app.handle)])


if __name__ == "__main__":
    main(sys.argv[1:])
