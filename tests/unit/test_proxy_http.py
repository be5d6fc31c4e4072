"""The HTTP proxy handler (membrane.proxy.http) and the rule matcher (membrane.policy.l7http).

The handler runs on real loopback sockets: a client, the handler as the accepting side, and a small
upstream HTTP/1.1 server that echoes what it got; no root, no redirect (that is the lab test's job).
"""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from membrane.hubble.l7flow import L7Record, l7_flow
from membrane.hubble.render import compact
from membrane.policy.l7 import Redirect
from membrane.policy.l7http import HTTPRule, decide
from membrane.proxy.http import handle_http
from membrane.proxy.registry import Conn, L7Context

RULE1 = [{"method": "POST", "path": "/v1/request-landing"}]


# ---- matcher -------------------------------------------------------------------------------------------
def rules(*data: dict) -> list[HTTPRule]:
    return [HTTPRule.compile(d) for d in data]


def test_method_path_host_are_anchored_regexes():
    r = rules({"method": "GET", "path": "/v1/.*", "host": "api\\.example"})
    assert decide(r, "GET", "/v1/x", [("Host", "api.example")]).allowed
    assert not decide(r, "GETX", "/v1/x", [("Host", "api.example")]).allowed
    assert not decide(r, "GET", "/v2/v1/x", [("Host", "api.example")]).allowed
    assert not decide(r, "GET", "/v1/x", [("Host", "api.example.evil")]).allowed
    assert decide(None, "DELETE", "/", []).allowed  # allow-all
    assert not decide([], "GET", "/", []).allowed  # nothing allowed
    assert decide(rules({}), "PUT", "/anything", []).allowed  # http: [{}] = visibility only


def test_headers_presence_and_exact_value():
    r = rules({"headers": ["X-Token", "X-Env: prod"]})
    assert decide(r, "GET", "/", [("x-token", "a"), ("X-Env", "prod")]).allowed
    assert not decide(r, "GET", "/", [("X-Env", "prod")]).allowed
    assert not decide(r, "GET", "/", [("x-token", "a"), ("X-Env", "dev")]).allowed


@pytest.mark.parametrize(("mismatch", "allowed", "headers"), [
    ("", False, [("X-Env", "dev")]),
    ("LOG", True, [("X-Env", "dev")]),
    ("ADD", True, [("X-Env", "dev"), ("X-Env", "prod")]),
    ("DELETE", True, []),
    ("REPLACE", True, [("X-Env", "prod")]),
])
def test_header_matches_mismatch_actions(mismatch, allowed, headers):
    r = rules({"headerMatches": [{"name": "X-Env", "value": "prod", "mismatch": mismatch}]})
    d = decide(r, "GET", "/", [("X-Env", "dev")])
    assert d.allowed == allowed
    if allowed:
        assert d.headers == headers
    assert decide(r, "GET", "/", [("x-env", "prod")]).allowed


def test_header_match_secret_value():
    r = rules({"headerMatches": [{"name": "Authorization", "secret": {"namespace": "ns", "name": "tok"},
                                  "mismatch": "REPLACE"}]})
    d = decide(r, "GET", "/", [], secret_value=lambda ns, n: "Bearer s3cret" if (ns, n) == ("ns", "tok") else None)
    assert d.allowed and d.headers == [("Authorization", "Bearer s3cret")]
    assert not decide(r, "GET", "/", []).allowed  # an unknown secret never matches


# ---- handler on loopback sockets ----------------------------------------------------------------------
async def upstream_server(seen: list[bytes]) -> asyncio.base_events.Server:
    """HTTP/1.1 keep-alive server: answers 200 with a JSON echo of method, path and body."""
    import h11

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        req, body = None, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)
                if not data:
                    break
                continue
            if isinstance(event, h11.Request):
                req, body = event, b""
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                seen.append(req.method + b" " + req.target)
                out = json.dumps({"method": req.method.decode(), "path": req.target.decode(), "len": len(body),
                                  "headers": [[k.decode(), v.decode()] for k, v in req.headers]}).encode()
                writer.write(conn.send(h11.Response(status_code=200, headers=[("content-length", str(len(out)))])))
                writer.write(conn.send(h11.Data(data=out)) + conn.send(h11.EndOfMessage()))
                await writer.drain()
                conn.start_next_cycle()
            else:
                break
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


class Harness:
    def __init__(self, rules: list[dict] | None, upstream_port: int | None) -> None:
        self.rules, self.upstream_port = rules, upstream_port
        self.records: list[L7Record] = []

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.upstream_port is None:
            raise ConnectionRefusedError("no upstream")
        return await asyncio.open_connection("127.0.0.1", self.upstream_port)

    async def proxy(self) -> asyncio.base_events.Server:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            ctx = L7Context(Redirect("ingress", 6, 80, "http"), 1, ("10.0.1.2", 40000), ("10.0.1.3", 80), 258, 259,
                            self.rules, self.open, self.records.append)
            try:
                await handle_http(Conn(reader, writer), ctx)
            finally:
                writer.close()

        return await asyncio.start_server(accepted, "127.0.0.1", 0)


async def exchange(port: int, payload: bytes, until: int = 1) -> bytes:
    """Send ``payload`` and read until ``until`` responses' ends were seen or the peer closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    got = b""
    try:
        while got.count(b"HTTP/1.1 ") < until or not _complete(got, until):
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            if not chunk:
                break
            got += chunk
    finally:
        writer.close()
    return got


def _complete(data: bytes, n: int) -> bool:
    parts = data.split(b"HTTP/1.1 ")[1:]
    if len(parts) < n:
        return False
    last = parts[-1]
    head, sep, body = last.partition(b"\r\n\r\n")
    if not sep:
        return False
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(
        b"content-length:")), 0)
    return len(body) >= length


def run(coro):
    return asyncio.run(coro)


def req(method: str, path: str, body: bytes = b"", extra: str = "") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: deathstar\r\n{extra}Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_allowed_denied_and_keepalive_on_one_connection():
    async def main() -> tuple[bytes, list[bytes], Harness]:
        seen: list[bytes] = []
        up = await upstream_server(seen)
        h = Harness(RULE1, up.sockets[0].getsockname()[1])
        px = await h.proxy()
        port = px.sockets[0].getsockname()[1]
        out = await exchange(port, req("POST", "/v1/request-landing", b"x") + req("PUT", "/v1/exhaust-port")
                             + req("POST", "/v1/request-landing"), until=3)
        px.close()
        up.close()
        return out, seen, h

    out, seen, h = run(main())
    responses = out.split(b"HTTP/1.1 ")[1:]
    assert [r[:3] for r in responses] == [b"200", b"403", b"200"]
    assert responses[1].endswith(b"\r\n\r\nAccess denied\r\n")
    assert seen == [b"POST /v1/request-landing", b"POST /v1/request-landing"]  # the PUT never went upstream
    kinds = [(r.type, r.verdict, r.http.get("method"), r.http.get("code", 0)) for r in h.records]
    assert kinds == [("REQUEST", "FORWARDED", "POST", 0), ("RESPONSE", "FORWARDED", "POST", 200),
                     ("REQUEST", "DROPPED", "PUT", 0),
                     ("REQUEST", "FORWARDED", "POST", 0), ("RESPONSE", "FORWARDED", "POST", 200)]
    flow = l7_flow(h.records[2], lambda ip: None, "k8s-w1")
    line = compact(flow)
    assert "http-request DROPPED (HTTP/1.1 PUT http://deathstar/v1/exhaust-port)" in line
    assert flow.l7.http.url == "http://deathstar/v1/exhaust-port" and flow.source.identity == 258


def test_chunked_body_is_forwarded_whole():
    async def main() -> bytes:
        up = await upstream_server([])
        h = Harness([{"method": "POST"}], up.sockets[0].getsockname()[1])
        px = await h.proxy()
        body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        out = await exchange(px.sockets[0].getsockname()[1],
                             b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        px.close()
        up.close()
        return out

    out = run(main())
    assert out.startswith(b"HTTP/1.1 200") and b'"len": 11' in out


def test_upstream_failure_is_503_and_garbage_is_400():
    async def main() -> tuple[bytes, bytes]:
        h = Harness(None, None)
        px = await h.proxy()
        port = px.sockets[0].getsockname()[1]
        a = await exchange(port, req("GET", "/"))
        b = await exchange(port, b"\x00\x01 garbage\r\n\r\n")
        px.close()
        return a, b

    a, b = run(main())
    assert a.startswith(b"HTTP/1.1 503") and b"upstream connect error" in a
    assert b.startswith(b"HTTP/1.1 400")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=300),
    st.builds(lambda m, p, junk: f"{m} {p} HTTP/1.1\r\nHost: x\r\n".encode() + junk,
              st.sampled_from(["GET", "POST", "PUT", "X" * 40]), st.text(max_size=30).map(lambda s: "/" + s),
              st.binary(max_size=80)),
))
def test_fuzzed_requests_never_crash_the_handler_and_it_keeps_serving(data: bytes):
    async def main() -> tuple[bytes, bytes]:
        up = await upstream_server([])
        h = Harness(RULE1, up.sockets[0].getsockname()[1])
        px = await h.proxy()
        port = px.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data)
        writer.write_eof()
        try:
            first = await asyncio.wait_for(reader.read(65536), 5)
        except (ConnectionError, TimeoutError):
            first = b""
        writer.close()
        after = await exchange(port, req("POST", "/v1/request-landing"))
        px.close()
        up.close()
        return first, after

    first, after = run(main())
    assert first == b"" or first.startswith(b"HTTP/1.1 ")
    assert after.startswith(b"HTTP/1.1 200")
