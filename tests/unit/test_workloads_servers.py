"""The built-in workload images as real processes, on 127.0.0.1 only, each stopped by its PID afterwards."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

HOSTNAME = "pod-under-test"
LOOPBACK = "127.0.0.1"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


class Workload:
    def __init__(self, proc: subprocess.Popen, log) -> None:
        self.proc, self._log = proc, log

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self) -> int:
        """SIGTERM by PID; returns the exit status (fails the test if it takes more than 3 s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"pid {self.proc.pid} ignored SIGTERM for 3 s")


@contextmanager
def workload(module: str, *args: str, env: dict[str, str] | None = None,
             wait_tcp: int | None = None, wait_udp: int | None = None) -> Iterator[Workload]:
    environment = {**os.environ, "MEMBRANE_LISTEN_ADDRESS": LOOPBACK, "HOSTNAME": HOSTNAME, **(env or {})}
    for key in ("WHOAMI_PORT_NUMBER", "WHOAMI_NAME", "PORT"):
        if env is None or key not in env:
            environment.pop(key, None)
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-m", f"membrane.lab.workloads.{module}", *args],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=environment)
        w = Workload(proc, log)
        try:
            deadline = time.monotonic() + 10
            while wait_tcp is not None or wait_udp is not None:
                if proc.poll() is not None:
                    pytest.fail(f"{module} exited with {proc.returncode}:\n{w.output()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"{module} did not start listening:\n{w.output()}")
                if wait_tcp is not None and _tcp_open(wait_tcp):
                    wait_tcp = None
                if wait_tcp is None and wait_udp is not None and "UDP" in w.output():
                    wait_udp = None
                time.sleep(0.01)
            yield w
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _tcp_open(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), timeout=0.2).close()
        return True
    except OSError:
        return False


def http(port: int, method: str = "GET", target: str = "/", headers: list[tuple[str, str]] | None = None,
         body: bytes = b"", sock: socket.socket | None = None) -> tuple[int, dict[str, str], bytes, int]:
    """One request over a raw socket: (status, headers with lower-case names, body, local port)."""
    own = sock is None
    conn = sock or socket.create_connection((LOOPBACK, port), timeout=5)
    try:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {LOOPBACK}:{port}"]
        lines += [f"{k}: {v}" for k, v in headers or []]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before headers: {data!r}")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        fields = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
        length = 0 if method == "HEAD" else int(fields.get("content-length", "0"))
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            rest += chunk
        return int(status_line.split()[1]), fields, rest[:length], conn.getsockname()[1]
    finally:
        if own:
            conn.close()


def udp(port: int, message: bytes) -> tuple[bytes, int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.bind((LOOPBACK, 0))
        sock.sendto(message, (LOOPBACK, port))
        return sock.recv(4096), sock.getsockname()[1]


# --- traefik/whoami --------------------------------------------------------------------------------------


def test_whoami_echoes_the_request_like_traefik_whoami() -> None:
    port = free_port()
    with workload("whoami", "--port", str(port), wait_tcp=port) as w:
        status, fields, body, local = http(port, "GET", "/hello?x=1",
                                           [("User-Agent", "test/1"), ("x-b", "2"), ("X-A", "1"), ("accept", "*/*")])
        assert status == 200
        assert fields["content-type"] == "text/plain; charset=utf-8"
        text = body.decode()
        top, _, dump = text.partition(f"RemoteAddr: {LOOPBACK}:{local}\n")
        assert top.startswith(f"Hostname: {HOSTNAME}\n")
        assert "IP: 127.0.0.1\n" in top
        assert all(line.startswith(("Hostname: ", "IP: ")) for line in top.splitlines())
        assert dump == (
            "GET /hello?x=1 HTTP/1.1\r\n"
            f"Host: {LOOPBACK}:{port}\r\n"
            "User-Agent: test/1\r\n"
            "Accept: */*\r\n"
            "X-A: 1\r\n"
            "X-B: 2\r\n"
            "\r\n"
        )
        assert w.stop() == 0


def test_whoami_post_body_name_env_and_keep_alive() -> None:
    port = free_port()
    env = {"WHOAMI_PORT_NUMBER": str(port), "WHOAMI_NAME": "blue"}
    with workload("whoami", env=env, wait_tcp=port) as w:
        with socket.create_connection((LOOPBACK, port), timeout=5) as conn:
            _, _, first, _ = http(port, "POST", "/submit", body=b"payload", sock=conn)
            _, _, second, _ = http(port, "GET", "/again", sock=conn)
        assert first.decode().startswith(f"Name: blue\nHostname: {HOSTNAME}\n")
        assert "User-Agent: Go-http-client/1.1\r\nContent-Length: 7\r\n" in first.decode()
        assert first.endswith(b"\r\n\r\npayload")
        assert "GET /again HTTP/1.1\r\n" in second.decode()
        assert w.stop() == 0


def test_whoami_api_health_bench_data() -> None:
    port = free_port()
    with workload("whoami", f"--port={port}", "--name", "api-test", wait_tcp=port) as w:
        status, fields, body, local = http(port, "GET", "/api", [("X-Trace", "t1")])
        assert status == 200 and fields["content-type"] == "application/json"
        data = json.loads(body)
        assert list(data) == ["hostname", "ip", "headers", "url", "host", "method", "name", "remoteAddr"]
        assert data["hostname"] == HOSTNAME and "127.0.0.1" in data["ip"]
        assert data["headers"] == {"X-Trace": ["t1"]}
        assert (data["url"], data["host"], data["method"], data["name"]) == ("/api", f"{LOOPBACK}:{port}", "GET",
                                                                            "api-test")
        assert data["remoteAddr"] == f"{LOOPBACK}:{local}"
        assert http(port, "GET", "/health")[0] == 200
        assert http(port, "POST", "/health", body=b"503")[0] == 200
        assert http(port, "GET", "/health")[0] == 503
        assert http(port, "POST", "/health", body=b"nope")[0] == 400
        assert http(port, "GET", "/bench")[2] == b"1"
        assert http(port, "GET", "/data?size=30")[2] == b"|ABCDEFGHIJKLMNOPQRSTUVWXYZ-A|"
        assert len(http(port, "GET", "/data?size=2&unit=KB")[2]) == 2048
        assert w.stop() == 0


def test_whoami_bad_flag_and_busy_port() -> None:
    with workload("whoami", "--bogus") as w:
        assert w.proc.wait(10) == 2
        assert "unknown flag: --bogus" in w.output()
    with socket.socket() as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen()
        with workload("whoami", "--port", str(holder.getsockname()[1])) as w:
            assert w.proc.wait(10) == 1
            assert "address already in use" in w.output().lower()


# --- nginx ----------------------------------------------------------------------------------------------


def test_nginx_welcome_page() -> None:
    port = free_port()
    with workload("nginx", "--port", str(port), "-g", "daemon off;", wait_tcp=port) as w:
        status, fields, body, _ = http(port, "GET", "/any/path")
        assert status == 200
        assert fields["server"] == "nginx/1.27.0"
        assert fields["content-type"] == "text/html"
        assert len(body) == int(fields["content-length"]) == 615
        assert b"<title>Welcome to nginx!</title>" in body
        status, fields, body, _ = http(port, "HEAD", "/")
        assert (status, fields["content-length"], body) == (200, "615", b"")
        status, _, body, _ = http(port, "POST", "/")
        assert status == 405 and b"405 Not Allowed" in body
        assert w.stop() == 0
        assert '"GET /any/path HTTP/1.1" 200 615' in w.output()


# --- agnhost --------------------------------------------------------------------------------------------


def test_agnhost_serve_hostname_http_and_close() -> None:
    port = free_port()
    with workload("agnhost", "serve-hostname", "--port", str(port), "--close", wait_tcp=port) as w:
        status, fields, body, _ = http(port, "GET", "/whatever")
        assert (status, body) == (200, HOSTNAME.encode())
        assert fields["connection"] == "close"
        assert w.stop() == 0


def test_agnhost_serve_hostname_tcp_and_udp() -> None:
    port = free_port()
    with workload("agnhost", "serve-hostname", "--tcp", "--udp", "--http=false", f"--port={port}",
                  wait_tcp=port) as w:
        with socket.create_connection((LOOPBACK, port), timeout=5) as conn:
            assert conn.recv(100) == HOSTNAME.encode()
            assert conn.recv(100) == b""  # the server closes after the name
        assert udp(port, b"anything")[0] == HOSTNAME.encode()
        assert w.stop() == 0


def test_agnhost_serve_hostname_refuses_http_with_tcp() -> None:
    with workload("agnhost", "serve-hostname", "--tcp") as w:
        assert w.proc.wait(10) == 1
        assert "Can't server TCP/UDP mode and HTTP mode at the same time" in w.output()


def test_agnhost_netexec_http_and_udp() -> None:
    http_port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    with workload("agnhost", "netexec", f"--http-port={http_port}", f"--udp-port={udp_port}",
                  wait_tcp=http_port, wait_udp=udp_port) as w:
        assert http(http_port, "GET", "/hostname")[2] == HOSTNAME.encode()
        assert http(http_port, "GET", "/hostName")[2] == HOSTNAME.encode()
        assert http(http_port, "GET", "/echo?msg=hello%20world")[2] == b"hello world"
        assert http(http_port, "GET", "/echo?msg=teapot&code=418")[0] == 418
        _, _, body, local = http(http_port, "GET", "/clientip")
        assert body == f"{LOOPBACK}:{local}".encode()
        assert http(http_port, "GET", "/healthz")[0] == 200
        assert re.match(rb"NOW: \d{4}-\d\d-\d\d ", http(http_port, "GET", "/")[2])
        assert udp(udp_port, b"hostname\n")[0] == HOSTNAME.encode()
        assert udp(udp_port, b"echo hello")[0] == b"hello"
        reply, local = udp(udp_port, b"clientip")
        assert reply == f"{LOOPBACK}:{local}".encode()
        dial = f"/dial?request=hostname&protocol=http&host={LOOPBACK}&port={http_port}&tries=2"
        assert json.loads(http(http_port, "GET", dial)[2]) == {"responses": [HOSTNAME, HOSTNAME]}
        dial = f"/dial?request=echo%20hi&protocol=udp&host={LOOPBACK}&port={udp_port}"
        assert json.loads(http(http_port, "GET", dial)[2]) == {"responses": ["hi"]}
        closed = free_port()
        dial = f"/dial?request=hostname&host={LOOPBACK}&port={closed}"
        errors = json.loads(http(http_port, "GET", dial)[2])
        assert list(errors) == ["errors"] and "refused" in errors["errors"][0].lower()
        assert http(http_port, "GET", "/dial?host=x&port=1")[0] == 400
        assert w.stop() == 0


def test_agnhost_netexec_exit_code() -> None:
    port = free_port()
    with workload("agnhost", "netexec", f"--http-port={port}", "--udp-port=-1", wait_tcp=port) as w:
        assert http(port, "GET", "/healthz")[0] == 412  # no UDP server: never ready, as upstream
        with pytest.raises(ConnectionError):
            http(port, "GET", "/exit?code=3")
        assert w.proc.wait(5) == 3


def test_agnhost_pause_and_unknown_subcommand() -> None:
    with workload("agnhost", "pause") as w:
        deadline = time.monotonic() + 10
        while "Paused" not in w.output() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert w.proc.poll() is None
        assert w.stop() == 0
    with workload("agnhost", "nettest") as w:
        assert w.proc.wait(10) == 1
        assert 'unknown command "nettest" for "agnhost"' in w.output()


# --- idle, json-mock, starwars --------------------------------------------------------------------------


def test_idle_waits_for_sigterm() -> None:
    with workload("idle", "ignored", "args") as w:
        time.sleep(0.3)
        assert w.proc.poll() is None
        started = time.monotonic()
        assert w.stop() == 0
        assert time.monotonic() - started < 2


def test_json_mock() -> None:
    port = free_port()
    with workload("jsonmock", env={"PORT": str(port)}, wait_tcp=port) as w:
        status, fields, body, _ = http(port, "GET", "/public")
        assert status == 200 and fields["content-type"].startswith("application/json")
        assert json.loads(body) == [{"id": 1, "body": "public information"}]
        assert json.loads(http(port, "GET", "/private/1")[2]) == {"id": 1, "body": "secret information"}
        assert http(port, "GET", "/nothing")[:3:2] == (404, b"{}")
        assert http(port, "GET", "/")[0] == 200
        assert json.loads(http(port, "GET", "/hostname")[2]) == {"hostname": HOSTNAME}
        status, _, body, _ = http(port, "POST", "/public", [("Content-Type", "application/json")], b'{"body":"x"}')
        assert (status, json.loads(body)) == (201, {"body": "x", "id": 2})
        # what cilium-cli's client-egress-l7-set-header relies on: 401 without the header, 2xx with it
        assert http(port, "POST", "/auth-header-required")[0] == 401
        assert http(port, "POST", "/auth-header-required", [("Authorization", "Bearer 123456")])[0] == 200
        assert http(port, "GET", "/auth-header-required/public", [("Authorization", "Bearer 123456")])[0] == 200
        assert w.stop() == 0


def test_starwars_deathstar() -> None:
    port = free_port()
    with workload("starwars", "--port", str(port), wait_tcp=port) as w:
        assert http(port, "POST", "/v1/request-landing")[2] == b"Ship landed\n"
        info = json.loads(http(port, "GET", "/v1")[2])
        assert info["name"] == "Death Star" and "PUT   /v1/exhaust-port" in info["api"]
        assert http(port, "PUT", "/v1/exhaust-port")[2].startswith(b"Panic: deathstar exploded")
        assert w.stop() == 0


def test_agnhost_netexec_delay_shutdown_keeps_serving() -> None:
    port = free_port()
    with workload("agnhost", "netexec", f"--http-port={port}", "--udp-port=-1", "--delay-shutdown=1",
                  wait_tcp=port) as w:
        started = time.monotonic()
        w.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert w.proc.poll() is None
        assert http(port, "GET", "/hostname")[2] == HOSTNAME.encode()
        assert w.proc.wait(5) == 0
        assert time.monotonic() - started >= 1.0
