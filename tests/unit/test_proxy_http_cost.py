"""What keeps the HTTP proxy cheap per request: one write per response to the client, and a
connection's flow endpoints built once (membrane.proxy.http, membrane.hubble.l7flow)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from membrane.hubble.events import EndpointInfo
from membrane.hubble.l7flow import FORWARDED, REQUEST, RESPONSE, L7Record, l7_flow
from membrane.policy.l7 import Redirect
from membrane.proxy.http import handle_http
from membrane.proxy.protocol_io import Wire
from membrane.proxy.registry import Conn, L7Context
from tests.unit.test_proxy_http import req

BODY = b'{"ok": true}'
RESPONSE_BYTES = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY


class CountingWriter:
    """The accepted connection's writer; ``writes`` counts the handler's writes to it (Wire.write, the
    one place they go out: to the socket at once, or through this writer when the socket is full)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer, self.writes = writer, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.writer, name)


async def _one_write_upstream() -> asyncio.base_events.Server:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = b""
        while chunk := await reader.read(65536):
            buf += chunk
            while b"\r\n\r\n" in buf:
                _, buf = buf.split(b"\r\n\r\n", 1)
                writer.write(RESPONSE_BYTES)  # head and body in one write
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


def test_a_response_reaches_the_client_in_one_write(monkeypatch):
    real_write = Wire.write

    def counting(self: Wire, writer: Any, data: bytes) -> None:
        if isinstance(writer, CountingWriter):
            writer.writes += 1
        real_write(self, writer, data)

    monkeypatch.setattr(Wire, "write", counting)

    async def main() -> tuple[bytes, int]:
        up = await _one_write_upstream()
        port = up.sockets[0].getsockname()[1]
        counted: list[CountingWriter] = []

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            w = CountingWriter(writer)
            counted.append(w)
            ctx = L7Context(Redirect("ingress", 6, 80, "http"), 1, ("10.0.1.2", 40000), ("10.0.1.3", 80), 258, 259,
                            [{}], lambda: asyncio.open_connection("127.0.0.1", port), lambda _r: None)
            try:
                await handle_http(Conn(reader, w), ctx)  # type: ignore[arg-type]
            finally:
                writer.close()

        px = await asyncio.start_server(accepted, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", px.sockets[0].getsockname()[1])
        got = b""
        for _ in range(3):  # keep-alive: one request at a time, each answered whole
            writer.write(req("GET", "/v1"))
            await writer.drain()
            want = len(got) + len(RESPONSE_BYTES)
            while len(got) < want:
                got += await asyncio.wait_for(reader.read(65536), 5)
        writer.close()
        px.close()
        up.close()
        return got, counted[0].writes

    got, writes = asyncio.run(main())
    assert got.count(b"HTTP/1.1 200 OK") == 3 and got.endswith(BODY)
    assert writes == 3  # head + body + end of each response together, not one write per event


def test_flow_endpoints_are_looked_up_once_per_cache():
    asked: list[str] = []

    def lookup(ip: str) -> EndpointInfo:
        asked.append(ip)
        return EndpointInfo(identity=9, namespace="default", pod_name=f"pod-{ip}", labels=("k8s:app=x",))

    def record(kind: str) -> L7Record:
        return L7Record("http", kind, FORWARDED, ("10.0.1.2", 40000), ("10.0.1.3", 80), 258, 259, True,
                        http={"method": "GET", "url": "http://x/", "code": 200})

    cache: dict = {}
    flows = [l7_flow(record(kind), lookup, "n", endpoints=cache) for kind in (REQUEST, RESPONSE, REQUEST, RESPONSE)]
    assert sorted(asked) == ["10.0.1.2", "10.0.1.3"]  # two ends, each once, for four flows
    uncached = l7_flow(record(RESPONSE), lookup, "n")
    assert flows[1].source == uncached.source and flows[1].destination == uncached.destination
    assert flows[1].source.pod_name == "pod-10.0.1.3" and flows[1].source.identity == 259


def _decided(monkeypatch, rules: list[dict], payload: bytes, until: int) -> tuple[list[bytes], int]:
    from membrane.proxy import http as proxy_http
    from tests.unit.test_proxy_http import Harness, exchange, run, upstream_server

    calls: list[str] = []
    real = proxy_http.decide

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(proxy_http, "decide", counting)

    async def main() -> bytes:
        up = await upstream_server([])
        px = await Harness(rules, up.sockets[0].getsockname()[1]).proxy()
        out = await exchange(px.sockets[0].getsockname()[1], payload, until=until)
        px.close()
        up.close()
        return out

    out = run(main())
    return [r[:3] for r in out.split(b"HTTP/1.1 ")[1:]], len(calls)


def test_a_connection_decides_a_repeated_request_once_when_no_rule_reads_headers(monkeypatch):
    codes, decided = _decided(monkeypatch, [{"method": "GET", "path": "/v1"}],
                              req("GET", "/v1") * 3 + req("GET", "/v2") + req("GET", "/v1"), until=5)
    assert codes == [b"200", b"200", b"200", b"403", b"200"]
    assert decided == 2  # GET /v1 once, GET /v2 once


def test_rules_that_read_headers_decide_every_request(monkeypatch):
    codes, decided = _decided(monkeypatch, [{"path": "/v1", "headers": ["X-Token: yes"]}],
                              req("GET", "/v1", extra="X-Token: yes\r\n") + req("GET", "/v1")
                              + req("GET", "/v1", extra="X-Token: yes\r\n"), until=3)
    assert codes == [b"200", b"403", b"200"] and decided == 3


def test_a_body_larger_than_the_socket_buffers_arrives_whole_to_a_slow_client():
    """Writes go to the socket directly while the transport holds nothing; what the socket does not
    take goes through the transport, in order (a slow reader fills both)."""
    big = bytes(range(256)) * (4 * 1024)  # 1 MiB

    async def main() -> bytes:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big))
            for i in range(0, len(big), 256 * 1024):
                writer.write(big[i:i + 256 * 1024])
                await writer.drain()
            await reader.read()
            writer.close()

        up = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = up.sockets[0].getsockname()[1]

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            ctx = L7Context(Redirect("ingress", 6, 80, "http"), 1, ("10.0.1.2", 40000), ("10.0.1.3", 80), 258, 259,
                            [{}], lambda: asyncio.open_connection("127.0.0.1", port), lambda _r: None)
            try:
                await handle_http(Conn(reader, writer), ctx)
            finally:
                writer.close()

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)  # inherited by the proxy's side
        listener.bind(("127.0.0.1", 0))
        px = await asyncio.start_server(accepted, sock=listener)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # a small window: the proxy's sends stall
        sock.connect(px.sockets[0].getsockname())
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(req("GET", "/big"))
        await asyncio.sleep(0.3)  # the proxy's writes to us fill the socket and its transport
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        body = await asyncio.wait_for(reader.readexactly(len(big)), 20)
        writer.close()
        px.close()
        up.close()
        return head + body

    got = asyncio.run(main())
    assert got.endswith(big) and got.startswith(b"HTTP/1.1 200 OK")
