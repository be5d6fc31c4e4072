"""Shared pieces of the workloads: flags, Go compatibility helpers, interface addresses, the HTTP core."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from membrane.lab.workloads import httpcore
from membrane.lab.workloads.flags import FlagError, parse_flags
from membrane.lab.workloads.gocompat import canonical_header_key, now_text, parse_duration
from membrane.lab.workloads.httpcore import Request, Response
from membrane.lab.workloads.netaddrs import interface_addresses

DEFAULTS = {"port": 9376, "tcp": False, "http": True, "name": ""}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], DEFAULTS),
        (["--port=80", "--tcp", "--http=false"], {**DEFAULTS, "port": 80, "tcp": True, "http": False}),
        (["--port", "81", "-name", "x"], {**DEFAULTS, "port": 81, "name": "x"}),
        (["-port=82", "--tcp=1"], {**DEFAULTS, "port": 82, "tcp": True}),
    ],
)
def test_flags(argv: list[str], expected: dict) -> None:
    assert parse_flags(argv, DEFAULTS) == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bogus"], "unknown flag: --bogus"),
        (["--port"], "flag needs an argument: --port"),
        (["--port=eighty"], 'invalid argument "eighty" for "--port" flag'),
        (["--tcp=maybe"], "invalid argument 'maybe' for --tcp"),
        (["stray"], "unexpected argument 'stray'"),
    ],
)
def test_bad_flags(argv: list[str], message: str) -> None:
    with pytest.raises(FlagError) as info:
        parse_flags(argv, DEFAULTS)
    assert message in str(info.value)


def test_go_durations() -> None:
    assert parse_duration("0") == 0
    assert parse_duration("300ms") == pytest.approx(0.3)
    assert parse_duration("1h2m3.5s") == pytest.approx(3723.5)
    assert parse_duration("-1.5s") == pytest.approx(-1.5)
    for bad in ("", "5", "1x", "s", "1s2"):
        with pytest.raises(ValueError, match="invalid duration"):
            parse_duration(bad)


def test_canonical_header_keys() -> None:
    assert canonical_header_key("x-forwarded-for") == "X-Forwarded-For"
    assert canonical_header_key("USER-AGENT") == "User-Agent"
    assert canonical_header_key("bad key") == "bad key"


def test_now_text_looks_like_go() -> None:
    import re

    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? [+-]\d{4} \S+ m=\+\d+\.\d{9}", now_text())


def test_interface_addresses_include_loopback() -> None:
    addresses = interface_addresses()
    assert "127.0.0.1" in addresses
    for addr in addresses:
        socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)


def test_client_address_unmaps_ipv4() -> None:
    assert httpcore.client_address(("::ffff:10.0.0.7", 5, 0, 0)) == ("10.0.0.7", 5)
    assert httpcore.client_address(("fd00::1", 5, 0, 0)) == ("fd00::1", 5)


def test_request_target_forms() -> None:
    req = Request("GET", "http://example:8080/a%20b?x=1&x=2&y=", "HTTP/1.1", [("Host", "ignored")], ("1.2.3.4", 9))
    assert (req.path, req.query_string, req.host, req.request_uri) == ("/a b", "x=1&x=2&y=", "example:8080",
                                                                       "/a%20b?x=1&x=2&y=")
    assert req.query() == {"x": ["1", "2"], "y": [""]}
    assert req.remote_addr == "1.2.3.4:9"
    assert Request("GET", "/", "HTTP/1.1", [], ("::1", 9)).remote_addr == "[::1]:9"


# --- the HTTP core over loopback, in process ---------------------------------------------------------


def _echo(req: Request) -> Response:
    body = f"{req.method} {req.path} {req.version} body={req.body.decode()} chunked={req.chunked}"
    return httpcore.text(body)


@pytest.fixture
def server() -> Iterator[int]:
    listener = httpcore.open_tcp_listener(0, "127.0.0.1")

    def run() -> None:
        try:
            httpcore.serve(listener, _echo)
        except OSError:
            pass  # the listener was closed: the test is over

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)


def _exchange(port: int, raw: bytes, replies: int = 1) -> bytes:
    """Send ``raw`` and read ``replies`` responses (framed by Content-Length) or until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        data = b""
        while _count_complete(data) < replies:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def _count_complete(data: bytes) -> int:
    count = 0
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            return count
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        if head.startswith(b"HTTP/1.1 100 "):
            length = 0
        if len(rest) < length:
            return count
        count += 1
        data = rest[length:]


def test_keep_alive_serves_several_requests(server: int) -> None:
    data = _exchange(server, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n", replies=2)
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert b"GET /a HTTP/1.1" in data and b"GET /b HTTP/1.1" in data


def test_content_length_and_chunked_bodies(server: int) -> None:
    data = _exchange(server, b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    assert data.endswith(b"POST /p HTTP/1.1 body=hello chunked=False")
    data = _exchange(server, b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n")
    assert data.endswith(b"POST /c HTTP/1.1 body=abcde chunked=True")


def test_expect_continue(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=5) as sock:
        sock.sendall(b"PUT /u HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"xyz")
        assert sock.recv(4096).endswith(b"body=xyz chunked=False")


def test_http10_closes_unless_keep_alive(server: int) -> None:
    data = _exchange(server, b"GET / HTTP/1.0\r\n\r\n")
    assert b"Connection: close" in data
    data = _exchange(server, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert b"Connection: keep-alive" in data


def test_head_has_no_body(server: int) -> None:
    data = _exchange(server, b"HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Content-Length: %d" % len(b"HEAD /h HTTP/1.1 body= chunked=False") in head
    assert body == b""


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\n\r\n", b"400"),  # HTTP/1.1 needs a Host header
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", b"505"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n bad: fold\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", b"501"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", b"400"),
        (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414"),
    ],
)
def test_malformed_requests_get_an_error_and_close(server: int, raw: bytes, status: bytes) -> None:
    data = _exchange(server, raw)
    assert data.startswith(b"HTTP/1.1 " + status)
    assert b"Connection: close" in data
