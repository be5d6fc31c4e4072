"""agnhost netexec: an HTTP server (``--http-port``, 8080) and a UDP server (``--udp-port``, 8081; -1 = off).

HTTP: ``/`` (``NOW: <time>``), ``/hostname`` and ``/hostName``, ``/echo?msg=&code=``, ``/clientip``
(``ip:port``), ``/healthz`` (200 once the UDP server runs, else 412, as upstream), ``/exit?code=&wait=&timeout=``,
``/shutdown``, ``/redirect?location=&code=``, ``/dial?host=&port=&request=&protocol=http|udp&tries=``.
UDP: ``hostname``, ``echo <msg>`` and ``clientip`` (the text is lower-cased first, as upstream does).
``/shell`` and ``/upload`` are refused: here they would run as root on the host, not in a container.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from urllib.parse import quote

from membrane.lab.workloads import httpcore, runtime
from membrane.lab.workloads.flags import FlagError, parse_flags
from membrane.lab.workloads.gocompat import now_text, parse_duration
from membrane.lab.workloads.httpcore import Request, Response, text

FLAGS = {"http-port": 8080, "udp-port": 8081, "sctp-port": -1, "http-override": "", "udp-listen-addresses": "",
         "tls-cert-file": "", "tls-private-key-file": "", "delay-shutdown": 0}
DIAL_TIMEOUT = 5.0


class Netexec:
    def __init__(self, http_override: str) -> None:
        self.http_override = http_override
        self.udp_ready = threading.Event()

    def handle(self, req: Request) -> Response:
        if self.http_override:
            req = Request("GET", self.http_override, req.version, req.headers, req.client)
        routes = {
            "/clientip": self.clientip, "/dial": self.dial, "/echo": self.echo, "/exit": self.exit,
            "/healthz": self.healthz, "/hostname": self.hostname, "/hostName": self.hostname,
            "/redirect": self.redirect, "/shutdown": self.shutdown, "/shell": self.refused, "/upload": self.refused,
        }
        return routes.get(req.path, self.root)(req)

    def root(self, req: Request) -> Response:
        runtime.log("GET /")
        return text(f"NOW: {now_text()}")

    def hostname(self, req: Request) -> Response:
        runtime.log(f"GET {req.path}")
        return text(runtime.hostname())

    def clientip(self, req: Request) -> Response:
        runtime.log("GET /clientip")
        return text(req.remote_addr)

    def echo(self, req: Request) -> Response:
        msg, code_text = req.form_value("msg"), req.form_value("code")
        runtime.log(f"GET /echo?msg={msg}&code={code_text}")
        status = 200
        if code_text:
            try:
                status = int(code_text)
            except ValueError:
                return text(f"argument 'code' must be an integer or empty, got {code_text!r}\n")
        return text(msg, status if 100 <= status <= 999 else 500)

    def healthz(self, req: Request) -> Response:
        runtime.log("GET /healthz")
        return Response(200 if self.udp_ready.is_set() else 412)

    def exit(self, req: Request) -> Response:
        args = {name: req.form_value(name) for name in ("code", "timeout", "wait")}
        runtime.log(f"GET /exit?code={args['code']}&timeout={args['timeout']}&wait={args['wait']}")
        try:
            timeout = parse_duration(args["timeout"]) if args["timeout"] else 0.0
            wait = parse_duration(args["wait"]) if args["wait"] else 0.0
        except ValueError as exc:
            return text(f"argument must be a valid golang duration or empty: {exc}\n")
        try:
            code = int(args["code"]) if args["code"] else 0
        except ValueError:
            return text(f"argument 'code' must be an integer [0-127] or empty, got {args['code']!r}\n")
        runtime.log(f"Will begin shutdown in {wait}s, allowing {timeout}s for connections to close, then will exit with {code}")
        time.sleep(max(wait, 0.0))
        if timeout <= 0:
            runtime.exit_now(code)  # no answer at all, as upstream: the client sees the connection close
        return Response(200, close=True, after=lambda: runtime.exit_now(code))

    def shutdown(self, req: Request) -> Response:
        runtime.log("GET /shutdown")
        runtime.exit_now(0)

    def redirect(self, req: Request) -> Response:
        location, code_text = req.form_value("location"), req.form_value("code")
        status = 302
        if code_text:
            try:
                status = int(code_text)
            except ValueError:
                return text(f"argument 'code' must be an integer or empty, got {code_text!r}\n")
        body = f'<a href="{quote(location, safe="/:?=&%#")}">{httpcore.REASONS.get(status, "")}</a>.\n\n'
        headers = [("Location", location), ("Content-Type", "text/html; charset=utf-8")]
        return Response(status, body.encode() if req.method in ("GET", "HEAD") else b"", headers)

    def refused(self, req: Request) -> Response:
        return text(f"{req.path} is disabled in the lab's built-in agnhost (it would run on the host)\n", 501)

    def dial(self, req: Request) -> Response:
        host, port, request = req.arg("host"), req.arg("port"), req.arg("request")
        protocol, tries_text = req.arg("protocol").lower(), req.arg("tries")
        runtime.log(f"GET /dial?host={host}&protocol={protocol}&port={port}&request={request}&tries={tries_text}")
        try:
            tries = int(tries_text) if tries_text else 1
        except ValueError:
            return text(f"tries parameter is invalid. {tries_text!r}\n", 400)
        if not request:
            return text("request parameter not specified.\n", 400)
        if protocol not in ("", "http", "udp"):
            return text(f"unsupported protocol. {protocol}\n", 400)
        try:
            address = _resolve(host, port, socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM)
        except (OSError, ValueError) as exc:
            return text(f"host and/or port param are invalid. {exc}\n", 400)
        dialer = _dial_udp if protocol == "udp" else _dial_http
        responses: list[str] = []
        errors: list[str] = []
        last = ""
        for _ in range(tries):
            try:
                last = dialer(request, address)
                responses.append(last)
            except (OSError, ValueError) as exc:
                last = ""
                errors.append(str(exc))
        output: dict[str, list[str]] = {}
        if errors:
            output["errors"] = errors
        if last:
            output["responses"] = responses
        return Response(200, json.dumps(output, separators=(",", ":")).encode(),
                        [("Content-Type", "text/plain; charset=utf-8")])

    def serve_udp(self, sock: socket.socket) -> None:
        self.udp_ready.set()
        while True:
            data, addr = sock.recvfrom(2048)
            ip, port = httpcore.client_address(addr)
            client = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
            received = data.decode("utf-8", "replace").strip().lower()
            if received == "hostname":
                reply = runtime.hostname()
            elif received.startswith("echo "):
                reply = received.split(" ", 1)[1]
            elif received == "clientip":
                reply = client
            else:
                if received:
                    runtime.log(f"Unknown UDP command received from {client}: {received}")
                continue
            sock.sendto(reply.encode(), addr)


def _resolve(host: str, port: str, kind: int) -> tuple:
    if not port.isdigit():
        raise ValueError(f"invalid port {port!r}")
    family, _, _, _, address = socket.getaddrinfo(host or None, int(port), type=kind)[0]
    return (family, address)


def _dial_http(request: str, address: tuple) -> str:
    family, sockaddr = address
    host = f"[{sockaddr[0]}]" if family == socket.AF_INET6 else sockaddr[0]
    target = f"{host}:{sockaddr[1]}"
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(DIAL_TIMEOUT)
        try:
            sock.connect(sockaddr)
            sock.sendall(f"GET /{request} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: Go-http-client/1.1\r\n"
                         "Connection: close\r\n\r\n".encode())
            raw = _read_all(sock)
        except TimeoutError:
            raise OSError(f'Get "http://{target}/{request}": context deadline exceeded '
                          "(Client.Timeout exceeded while awaiting headers)") from None
        except OSError as exc:
            raise OSError(f'Get "http://{target}/{request}": dial tcp {target}: connect: {exc.strerror}') from None
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1."):
        raise OSError(f'Get "http://{target}/{request}": malformed HTTP response')
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return body.decode("utf-8", "replace")


def _dial_udp(request: str, address: tuple) -> str:
    family, sockaddr = address
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(DIAL_TIMEOUT)
        try:
            sock.connect(sockaddr)
            sock.send(request.encode())
            data = sock.recv(2048)
        except OSError as exc:
            raise OSError(f"reading from udp connection failed. err:'{exc}'") from None
    if not data:
        raise OSError("reading from udp connection failed. err:'empty reply'")
    return data.decode("utf-8", "replace")


def _read_all(sock: socket.socket) -> bytes:
    """A whole HTTP response: up to Content-Length, the last chunk, or the server closing."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            fields = dict(
                (k.strip().lower(), v.strip()) for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])
            )
            length = fields.get(b"content-length", b"")
            if length.isdigit() and len(body) >= int(length):
                return head + sep + body[: int(length)]
            if fields.get(b"transfer-encoding", b"").lower() == b"chunked" and body.endswith(b"0\r\n\r\n"):
                return data
        if not chunk:
            return data


def _dechunk(body: bytes) -> bytes:
    out, pos = bytearray(), 0
    while True:
        end = body.find(b"\r\n", pos)
        size = int(body[pos:end].split(b";")[0] or b"0", 16) if end >= 0 else 0
        if size == 0:
            return bytes(out)
        out += body[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2


def main(argv: list[str]) -> None:
    try:
        flags = parse_flags(argv, FLAGS)
    except FlagError as exc:
        print(f"Error: {exc}\nRun 'agnhost netexec --help' for usage.", file=sys.stderr)
        sys.exit(1)
    if flags["tls-cert-file"]:
        runtime.fatal("netexec: HTTPS (--tls-cert-file) is not supported by the lab's built-in agnhost")
    if flags["sctp-port"] != -1:
        runtime.log("netexec: SCTP is not supported by the lab's built-in agnhost; --sctp-port ignored")
    app = Netexec(flags["http-override"])
    loops = []
    try:
        if flags["udp-port"] != -1:
            addresses = [a.strip() for a in flags["udp-listen-addresses"].split(",") if a.strip()] or [None]
            for address in sorted(set(addresses), key=str):
                udp = httpcore.open_udp_socket(flags["udp-port"], address)
                loops.append(lambda udp=udp: app.serve_udp(udp))
                runtime.log(f"Started UDP server on port {address or ''} {flags['udp-port']}")
        listener = httpcore.open_tcp_listener(flags["http-port"])
    except OSError as exc:
        runtime.fatal(f"netexec: listen: {exc.strerror or exc}")
    runtime.log(f"Started HTTP server on port {flags['http-port']}")
    loops.append(lambda: httpcore.serve(listener, app.handle))
    delay = flags["delay-shutdown"]
    runtime.run_until_terminated(loops, on_signal=lambda _sig: time.sleep(max(delay, 0)))


if __name__ == "__main__":
    main(sys.argv[1:])
