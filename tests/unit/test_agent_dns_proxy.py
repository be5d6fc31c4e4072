"""The agent's DNS proxy on loopback sockets (no root, no redirect): UDP and TCP queries forwarded to the
server the pod asked or refused, answers learned before they are released, garbage survived."""

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

from membrane.agent.dns_proxy import Client, DNSProxy, Observation
from membrane.fqdn.dnsproxy import rule_keys

ZONE = {"one.one.one.one.": ["1.1.1.1", "1.0.0.1"], "ipinfo.io.": ["34.117.59.81"]}


class Upstream:
    """A tiny authoritative server for ZONE on 127.0.0.1 (UDP and TCP, same port)."""

    def __init__(self) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.port = self.udp.getsockname()[1]
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", self.port))
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


@pytest.fixture
def proxy() -> Iterator[tuple[DNSProxy, int, Upstream, list, list]]:
    up = Upstream()
    learned: list[tuple[int, str, tuple[str, ...], int, float]] = []
    observed: list[Observation] = []
    keys = rule_keys([{"matchName": "one.one.one.one"}, {"matchPattern": "*.svc.cluster.local"}])
    p = DNSProxy(lambda ip: Client(7, keys) if ip == "127.0.0.1" else None,
                 lambda client, local: ("127.0.0.1", up.port),
                 lambda ep, name, ips, ttl: learned.append((ep, name, ips, ttl, time.monotonic())),
                 observed.append)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", udp.getsockname()[1]))
    tcp.listen(8)
    p.start(udp, tcp)
    try:
        yield p, udp.getsockname()[1], up, learned, observed
    finally:
        p.stop()
        up.close()


def test_an_allowed_udp_query_is_forwarded_and_learned_before_the_answer_arrives(proxy):
    p, port, up, learned, observed = proxy
    r = dns.query.udp(dns.message.make_query("one.one.one.one", "A"), "127.0.0.1", port=port, timeout=5)
    received = time.monotonic()
    assert sorted(rd.address for rd in r.answer[0]) == ["1.0.0.1", "1.1.1.1"]
    assert up.asked == ["one.one.one.one."]
    (ep, name, ips, ttl, at), = learned
    assert (ep, name, sorted(ips), ttl) == (7, "one.one.one.one.", ["1.0.0.1", "1.1.1.1"], 120) and at <= received
    assert [(o.record.type, o.record.verdict, o.protocol) for o in observed] == [
        ("REQUEST", "FORWARDED", "UDP"), ("RESPONSE", "FORWARDED", "UDP")]
    assert observed[1].server == ("127.0.0.1", up.port)


@pytest.mark.parametrize("tcp", [False, True])
def test_a_denied_query_is_refused_by_the_proxy_and_never_reaches_the_server(proxy, tcp):
    p, port, up, learned, observed = proxy
    ask = dns.query.tcp if tcp else dns.query.udp
    r = ask(dns.message.make_query("ipinfo.io", "A"), "127.0.0.1", port=port, timeout=5)
    assert r.rcode() == dns.rcode.REFUSED and not r.answer
    assert up.asked == [] and learned == []
    assert [(o.record.verdict, o.record.summary()) for o in observed] == [("DROPPED", "DNS Query ipinfo.io. A")]


def test_tcp_queries_share_a_connection_and_are_learned(proxy):
    p, port, up, learned, _observed = proxy
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        for _ in range(3):
            r, _ = dns.query.receive_tcp(s, time.time() + 5) if dns.query.send_tcp(
                s, dns.message.make_query("one.one.one.one", "A"), time.time() + 5) else (None, None)
            assert r is not None and r.answer
    assert len(learned) == 3 and up.asked == ["one.one.one.one."] * 3


def test_garbage_is_dropped_and_the_proxy_keeps_serving(proxy):
    p, port, up, learned, _observed = proxy
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in (b"", b"\x00", b"\xff" * 40, dns.message.make_query("a.example", "A").to_wire()[:20]):
            s.sendto(junk, ("127.0.0.1", port))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"\x00\x05hello")  # a frame that is not DNS: the proxy closes the stream
        assert s.recv(100) == b""
    deadline = time.time() + 5
    while p.dropped_malformed < 5 and time.time() < deadline:
        time.sleep(0.01)
    assert p.dropped_malformed == 5 and up.asked == []
    r = dns.query.udp(dns.message.make_query("one.one.one.one", "A"), "127.0.0.1", port=port, timeout=5)
    assert r.answer


def test_a_query_from_an_address_that_is_no_endpoint_gets_nothing(proxy):
    p, port, up, _learned, _observed = proxy
    p.endpoint_of = lambda ip: None
    with pytest.raises(dns.exception.Timeout):
        dns.query.udp(dns.message.make_query("one.one.one.one", "A"), "127.0.0.1", port=port, timeout=0.5)
    assert up.asked == []


def test_a_failing_learn_hook_still_releases_the_answer(proxy):
    p, port, _up, _learned, _observed = proxy

    def boom(*_a: object) -> None:
        raise RuntimeError("policy map full")

    p.learn = boom
    r = dns.query.udp(dns.message.make_query("one.one.one.one", "A"), "127.0.0.1", port=port, timeout=5)
    assert r.answer
