"""registry.k8s.io/e2e-test-images/agnhost: the Kubernetes e2e test image (``/agnhost <subcommand> [flags]``).

Built in: ``pause`` (the image's default), ``serve-hostname``, ``netexec`` (see netexec.py), ``porter`` and
``liveness``. Other subcommands fail like a missing cobra command (exit 1). Flags take pflag's forms.
"""

from __future__ import annotations

import os
import socket
import sys
import time

from membrane.lab.workloads import httpcore, runtime
from membrane.lab.workloads.flags import FlagError, parse_flags
from membrane.lab.workloads.httpcore import Request, Response

SUBCOMMANDS = ("liveness", "netexec", "pause", "porter", "serve-hostname")


def pause(argv: list[str]) -> None:
    _flags(argv, {}, "pause")
    print("Paused", flush=True)
    runtime.run_until_terminated([], on_signal=lambda sig: print(f"Shutting down, got signal: {sig}", flush=True))


def serve_hostname(argv: list[str]) -> None:
    flags = _flags(argv, {"tcp": False, "udp": False, "http": True, "close": False, "port": 9376}, "serve-hostname")
    if flags["http"] and (flags["tcp"] or flags["udp"]):
        runtime.fatal("Can't server TCP/UDP mode and HTTP mode at the same time")
    name = runtime.hostname().encode()
    port = flags["port"]
    loops = []
    try:
        if flags["tcp"]:
            tcp = httpcore.open_tcp_listener(port)
            loops.append(lambda: _serve_tcp_hostname(tcp, name))
        if flags["udp"]:
            udp = httpcore.open_udp_socket(port)
            loops.append(lambda: _serve_udp_hostname(udp, name))
        if flags["http"]:
            listener = httpcore.open_tcp_listener(port)
            close = flags["close"]

            def answer(req: Request) -> Response:
                runtime.log(f"HTTP request from {req.remote_addr}")
                return Response(200, name, [("Content-Type", "text/plain; charset=utf-8")], close=close)

            loops.append(lambda: httpcore.serve(listener, answer))
    except OSError as exc:
        runtime.fatal(f"Error from net.Listen(): listen :{port}: {exc.strerror}")
    runtime.log(f"Serving on port {port}.")
    runtime.run_until_terminated(loops, on_signal=lambda sig: runtime.log(f"Shutting down after receiving signal {sig}."))


def _serve_tcp_hostname(listener: socket.socket, name: bytes) -> None:
    while True:
        conn, addr = listener.accept()
        with conn:
            ip, port = httpcore.client_address(addr)
            runtime.log(f"TCP request from {ip}:{port}")
            try:
                conn.sendall(name)
            except OSError:
                pass


def _serve_udp_hostname(sock: socket.socket, name: bytes) -> None:
    while True:
        _data, addr = sock.recvfrom(16)
        ip, port = httpcore.client_address(addr)
        runtime.log(f"UDP request from {ip}:{port}")
        sock.sendto(name, addr)


def porter(argv: list[str]) -> None:
    """Serve ``$SERVE_PORT_<n>`` on port n over HTTP (TLS ports are not supported here)."""
    _flags(argv, {"json-response": False}, "porter")
    loops = []
    for key, value in sorted(os.environ.items()):
        if key.startswith("SERVE_TLS_PORT_"):
            runtime.fatal(f"porter: {key}: TLS ports are not supported by the lab's built-in agnhost")
        if not key.startswith("SERVE_PORT_"):
            continue
        try:
            port = int(key.removeprefix("SERVE_PORT_"))
            listener = httpcore.open_tcp_listener(port)
        except (ValueError, OSError) as exc:
            runtime.fatal(f"porter: {key}: {exc}")
        body = value.encode()
        loops.append(lambda listener=listener, body=body: httpcore.serve(listener, lambda _r: Response(200, body)))
        runtime.log(f"porter: serving {key} on port {port}")
    if not loops:
        runtime.fatal("porter: no SERVE_PORT_<n> environment variables")
    runtime.run_until_terminated(loops)


def liveness(argv: list[str]) -> None:
    """``/healthz`` answers 200 for the first 10 s, then 500 (the probe tutorial's failing server), on 8080."""
    _flags(argv, {}, "liveness")
    started = time.monotonic()

    def answer(req: Request) -> Response:
        if req.path == "/healthz":
            elapsed = time.monotonic() - started
            if elapsed > 10:
                return httpcore.text(f"error: {elapsed:.6f}s", 500)
            return httpcore.text("ok")
        if req.path == "/redirect":
            return Response(302, b"", [("Location", req.arg("loc"))])
        return httpcore.text("404 page not found\n", 404)

    try:
        listener = httpcore.open_tcp_listener(8080)
    except OSError as exc:
        runtime.fatal(f"liveness: listen :8080: {exc.strerror}")
    runtime.run_until_terminated([lambda: httpcore.serve(listener, answer)])


def _flags(argv: list[str], defaults: dict, command: str) -> dict:
    try:
        return parse_flags(argv, defaults)
    except FlagError as exc:
        print(f"Error: {exc}\nRun 'agnhost {command} --help' for usage.", file=sys.stderr)
        sys.exit(1)


def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("agnhost: the Kubernetes e2e test image (lab built-in)\n\nAvailable Commands:\n  "
              + "\n  ".join(SUBCOMMANDS))
        sys.exit(0)
    command, rest = argv[0], argv[1:]
    if command == "netexec":
        from membrane.lab.workloads import netexec

        netexec.main(rest)
        return
    handlers = {"pause": pause, "serve-hostname": serve_hostname, "porter": porter, "liveness": liveness}
    handler = handlers.get(command)
    if handler is None:
        print(f'Error: unknown command "{command}" for "agnhost": not built into the lab image '
              f"(available: {', '.join(SUBCOMMANDS)})", file=sys.stderr)
        sys.exit(1)
    handler(rest)


if __name__ == "__main__":
    main(sys.argv[1:])
