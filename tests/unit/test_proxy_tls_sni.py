"""The TLS SNI proxy (membrane.proxy.tls_sni) on loopback between real TLS clients (curl, openssl
s_client, Python's ssl) and the lab world's HTTPS server: a listed server name goes through untouched
(end-to-end TLS, the proxy decrypts nothing), another name, no name or garbage gets a reset and no
upstream connection. No root, no redirect: the proxy listens on loopback and its upstream is the server."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator

import pytest

from membrane.hubble.l7flow import DROPPED, FORWARDED, L7Record, l7_flow
from membrane.lab.workloads import httpcore
from membrane.lab.world_tls import TLSListener, server_context
from membrane.proxy.tls_sni import handle_tls_sni, server_names, sni_allowed
from tests.unit.l7_harness import LoopServer, context

RULES = [{"serverName": "one.one.one.one"}, {"serverName": "*.cilium.io"}]


class Upstream:
    """The world's HTTPS answer on loopback, counting the connections it accepted."""

    def __init__(self) -> None:
        self.sock = httpcore.open_tcp_listener(0, "127.0.0.1")
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        tls = TLSListener(self.sock, server_context(["one.one.one.one", "www.cilium.io", "ipinfo.io"], ["127.0.0.1"]))
        outer = self

        class Counting:
            def accept(self):  # noqa: ANN202
                conn, addr = tls.accept()
                outer.accepted += 1
                return conn, addr

        def handle(req: httpcore.Request) -> httpcore.Response:
            return httpcore.text(f"hello {req.host}\n")

        threading.Thread(target=self._serve, args=(Counting(), handle), daemon=True).start()

    @staticmethod
    def _serve(listener: object, handle: object) -> None:
        try:
            httpcore.serve(listener, handle)  # type: ignore[arg-type]
        except OSError:
            pass  # closed at the end of the test


@pytest.fixture
def proxied() -> Iterator[tuple[int, Upstream, list[L7Record]]]:
    upstream = Upstream()
    records: list[L7Record] = []
    proxy = LoopServer(handle_tls_sni, lambda client: context("tls", 443, ("127.0.0.1", upstream.port), RULES,
                                                              records, client))
    try:
        yield proxy.port, upstream, records
    finally:
        proxy.close()
        upstream.sock.close()


def curl(port: int, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "-k", "--max-time", "5", "--resolve", f"{name}:{port}:127.0.0.1",
                           f"https://{name}:{port}/"], capture_output=True, text=True, timeout=10)


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")


@needs_curl
def test_curl_to_a_listed_name_gets_the_server_answer(proxied: tuple[int, Upstream, list[L7Record]]) -> None:
    port, upstream, records = proxied
    out = curl(port, "one.one.one.one")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"hello one.one.one.one:{port}\n"
    assert [(r.kind, r.verdict, r.summary) for r in records] == [("tls", FORWARDED, "TLS SNI one.one.one.one")]
    assert upstream.accepted == 1


@needs_curl
def test_curl_to_a_wildcard_name(proxied: tuple[int, Upstream, list[L7Record]]) -> None:
    port, _upstream, _records = proxied
    assert curl(port, "www.cilium.io").returncode == 0


@needs_curl
def test_curl_to_another_name_is_reset_before_any_upstream(proxied: tuple[int, Upstream, list[L7Record]]) -> None:
    port, upstream, records = proxied
    out = curl(port, "ipinfo.io")
    assert out.returncode == 35, (out.returncode, out.stderr)  # CURLE_SSL_CONNECT_ERROR, as upstream expects
    assert "reset" in out.stderr.lower()
    assert [(r.verdict, r.summary) for r in records] == [(DROPPED, "TLS SNI ipinfo.io")]
    assert upstream.accepted == 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_openssl_s_client(proxied: tuple[int, Upstream, list[L7Record]]) -> None:
    port, _upstream, records = proxied
    for name, ok in (("one.one.one.one", True), ("deathstar.empire", False)):
        out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", name],
                             input="", capture_output=True, text=True, timeout=10)
        assert ("BEGIN CERTIFICATE" in out.stdout) is ok, (name, out.stdout[-400:], out.stderr[-400:])
    assert [r.verdict for r in records] == [FORWARDED, DROPPED]


def _python_client(port: int, name: str | None) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=name) as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return tls.recv(4096)


def test_no_sni_is_reset(proxied: tuple[int, Upstream, list[L7Record]]) -> None:
    port, upstream, records = proxied
    with pytest.raises((ConnectionResetError, ssl.SSLError)):
        _python_client(port, None)
    assert [(r.verdict, r.summary) for r in records] == [(DROPPED, "TLS SNI (none)")]
    assert _python_client(port, "one.one.one.one").startswith(b"HTTP/1.1 200")
    assert upstream.accepted == 1


def test_plain_http_on_the_port_is_reset(proxied: tuple[int, Upstream, list[L7Record]]) -> None:
    port, upstream, records = proxied
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            assert s.recv(100) == b""  # a FIN (b"") instead of the reset fails here
    assert [r.verdict for r in records] == [DROPPED] and upstream.accepted == 0


@pytest.mark.parametrize("names, sni, ok", [
    (["one.one.one.one"], "one.one.one.one", True),
    (["One.One.One.One."], "one.one.one.one", True),
    (["one.one.one.one"], "two.one.one.one", False),
    (["*.cilium.io"], "www.cilium.io", True),
    (["*.cilium.io"], "a.b.cilium.io", False),
    (["**.cilium.io"], "a.b.cilium.io", True),
    (["**.cilium.io"], "cilium.io", False),
    (["*"], "anything.example", True),
    (["one.one.one.one"], "", False),
])
def test_name_matching(names: list[str], sni: str, ok: bool) -> None:
    assert sni_allowed(server_names([{"serverName": n} for n in names]), sni) is ok


def test_allow_all_accepts_any_name() -> None:
    assert sni_allowed(None, "whatever.example") and sni_allowed(None, "")


def test_record_becomes_an_l7_flow_with_its_summary() -> None:
    rec = L7Record(kind="tls", type="REQUEST", verdict=DROPPED, src=("10.0.0.5", 40000), dst=("203.0.113.12", 443),
                   src_identity=300, dst_identity=2, ingress=False, summary="TLS SNI ipinfo.io")
    flow = l7_flow(rec, lambda _ip: None, "k8s-w1")
    assert flow.Summary == "TLS SNI ipinfo.io" and flow.l4.TCP.destination_port == 443
