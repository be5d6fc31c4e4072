"""The DNS proxy (membrane.proxy.dns) on loopback sockets (no root, no redirect): UDP and TCP queries
forwarded to the server the pod asked or refused, answers learned before they are released, garbage
survived."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import dns.message
import dns.query
import dns.rcode
import dns.rrset
import pytest

from membrane.hubble.l7flow import L7Record
from membrane.proxy.dns import DNSAnswerer, UDPListener, tcp_handler
from tests.unit.l7_harness import LoopServer, context

ZONE = {"one.one.one.one.": ["1.1.1.1", "1.0.0.1"], "ipinfo.io.": ["34.117.59.81"]}


class Upstream:
    """A tiny authoritative server for ZONE on 127.0.0.1 (UDP and TCP, same port)."""

    def __init__(self) -> None:
        for _ in range(20):  # the same free port for UDP and TCP
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind(("127.0.0.1", 0))
            self.port = self.udp.getsockname()[1]
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self.tcp.bind(("127.0.0.1", self.port))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
        self.tcp.listen(8)
        self.asked: list[str] = []
        threading.Thread(target=self._udp, daemon=True).start()
        threading.Thread(target=self._tcp, daemon=True).start()

    def respond(self, wire: bytes) -> bytes:
        q = dns.message.from_wire(wire)
        name = q.question[0].name.to_text().lower()
        self.asked.append(name)
        r = dns.message.make_response(q)
        if name in ZONE:
            r.answer.append(dns.rrset.from_text_list(name, 120, "IN", "A", ZONE[name]))
        else:
            r.set_rcode(dns.rcode.NXDOMAIN)
        return r.to_wire()

    def _udp(self) -> None:
        while True:
            try:
                data, peer = self.udp.recvfrom(65535)
            except OSError:
                return
            self.udp.sendto(self.respond(data), peer)

    def _tcp(self) -> None:
        while True:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn:
                while True:
                    head = conn.recv(2)
                    if len(head) < 2:
                        break
                    (n,) = struct.unpack("!H", head)
                    data = b""
                    while len(data) < n:
                        data += conn.recv(n - len(data))
                    out = self.respond(data)
                    conn.sendall(struct.pack("!H", len(out)) + out)

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


RULES = [{"matchName": "one.one.one.one"}, {"matchPattern": "*.svc.cluster.local"}]


class Proxy:
    """A UDP listener and a TCP handler sharing one answerer; ``endpoint`` None: no redirect known."""

    def __init__(self, up: Upstream) -> None:
        self.learned: list[tuple[int, str, tuple[str, ...], int, float]] = []
        self.records: list[L7Record] = []
        self.endpoint: int | None = 7
        self.answerer = DNSAnswerer(lambda ep, name, ips, ttl: self.learned.append((ep, name, ips, ttl,
                                                                                     time.monotonic())))
        upstream = ("127.0.0.1", up.port)

        def describe(port: int, client: tuple[str, int], _orig: tuple[str, int]):  # type: ignore[no-untyped-def]
            if self.endpoint is None:
                return None
            return context("dns", 53, upstream, RULES, self.records, client, protocol=17, endpoint=self.endpoint)

        self.udp = UDPListener(0, describe, self.answerer, transparent=False, host="127.0.0.1")
        self.tcp = LoopServer(tcp_handler(self.answerer), lambda client: context("dns", 53, upstream, RULES,
                                                                                 self.records, client))


@pytest.fixture
def proxy() -> Iterator[tuple[Proxy, Upstream]]:
    up = Upstream()
    p = Proxy(up)
    try:
        yield p, up
    finally:
        p.udp.close()
        p.tcp.close()
        up.close()


def test_an_allowed_udp_query_is_forwarded_and_learned_before_the_answer_arrives(proxy):
    p, up = proxy
    r = dns.query.udp(dns.message.make_query("one.one.one.one", "A"), "127.0.0.1", port=p.udp.port, timeout=5)
    received = time.monotonic()
    assert sorted(rd.address for rd in r.answer[0]) == ["1.0.0.1", "1.1.1.1"]
    assert up.asked == ["one.one.one.one."]
    (ep, name, ips, ttl, at), = p.learned
    assert (ep, name, sorted(ips), ttl) == (7, "one.one.one.one.", ["1.0.0.1", "1.1.1.1"], 120) and at <= received
    assert [(rec.type, rec.verdict, rec.kind, rec.dns["udp"]) for rec in p.records] == [
        ("REQUEST", "FORWARDED", "dns", True), ("RESPONSE", "FORWARDED", "dns", True)]
    assert sorted(p.records[1].dns["ips"]) == ["1.0.0.1", "1.1.1.1"] and p.records[1].dns["ttl"] == 120
    assert p.records[0].summary == "DNS Query one.one.one.one. A"


@pytest.mark.parametrize("tcp", [False, True])
def test_a_denied_query_is_refused_by_the_proxy_and_never_reaches_the_server(proxy, tcp):
    p, up = proxy
    ask = dns.query.tcp if tcp else dns.query.udp
    r = ask(dns.message.make_query("ipinfo.io", "A"), "127.0.0.1", port=p.tcp.port if tcp else p.udp.port, timeout=5)
    assert r.rcode() == dns.rcode.REFUSED and not r.answer
    assert up.asked == [] and p.learned == []
    assert [(rec.verdict, rec.summary) for rec in p.records] == [("DROPPED", "DNS Query ipinfo.io. A")]


def test_nxdomain_instead_of_refused(proxy):
    p, _up = proxy
    p.answerer.reject_code = dns.rcode.NXDOMAIN
    r = dns.query.udp(dns.message.make_query("ipinfo.io", "A"), "127.0.0.1", port=p.udp.port, timeout=5)
    assert r.rcode() == dns.rcode.NXDOMAIN


def test_tcp_queries_share_a_connection_and_are_learned(proxy):
    p, up = proxy
    with socket.create_connection(("127.0.0.1", p.tcp.port), timeout=5) as s:
        for _ in range(3):
            dns.query.send_tcp(s, dns.message.make_query("one.one.one.one", "A"), time.time() + 5)
            r, _ = dns.query.receive_tcp(s, time.time() + 5)
            assert r.answer
    assert len(p.learned) == 3 and up.asked == ["one.one.one.one."] * 3
    assert {rec.dns["udp"] for rec in p.records} == {False}


def test_garbage_is_dropped_and_the_proxy_keeps_serving(proxy):
    p, up = proxy
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in (b"", b"\x00", b"\xff" * 40, dns.message.make_query("a.example", "A").to_wire()[:20]):
            s.sendto(junk, ("127.0.0.1", p.udp.port))
    with socket.create_connection(("127.0.0.1", p.tcp.port), timeout=5) as s:
        s.sendall(b"\x00\x05hello")  # a frame that is not DNS: the proxy closes the stream
        assert s.recv(100) == b""
    deadline = time.time() + 5
    while p.answerer.malformed < 5 and time.time() < deadline:
        time.sleep(0.01)
    assert p.answerer.malformed == 5 and up.asked == []
    r = dns.query.udp(dns.message.make_query("one.one.one.one", "A"), "127.0.0.1", port=p.udp.port, timeout=5)
    assert r.answer


def test_a_query_without_a_redirect_gets_nothing(proxy):
    p, up = proxy
    p.endpoint = None
    with pytest.raises(dns.exception.Timeout):
        dns.query.udp(dns.message.make_query("one.one.one.one", "A"), "127.0.0.1", port=p.udp.port, timeout=0.5)
    assert up.asked == []


def test_a_failing_learn_hook_still_releases_the_answer(proxy):
    p, _up = proxy

    def boom(*_a: object) -> None:
        raise RuntimeError("policy map full")

    p.answerer.learn = boom
    r = dns.query.udp(dns.message.make_query("one.one.one.one", "A"), "127.0.0.1", port=p.udp.port, timeout=5)
    assert r.answer
