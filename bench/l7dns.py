"""The DNS proxy's cost, on loopback in this process's network namespace (no lab, no redirect).

- queries/s: one client asking A records one after another for SECONDS, through the DNS proxy's UDP
  listener (rules checked, the answer parsed and learned) against the same upstream asked directly;
- answer -> policy: how long ``PolicySync.learn_dns`` takes for a new address a ``toFQDNs`` selects (its
  identity, policy-map entries and ipcache entry, on the in-memory datapath: the control plane's share,
  not the kernel's), against the same call for an address already known (nothing to do).

The redirect itself (TPROXY, the pod's veth) is not in these numbers; the lab test measures correctness
of that path (tests/lab/test_l7_dns.py).
"""

from __future__ import annotations

import os
import socket
import threading
import time

import dns.message
import dns.query
import dns.rrset

from bench.harness import Measurement

SECONDS = float(os.environ.get("MEMBRANE_BENCH_DNS_SECONDS", "2"))
LEARNS = 200


def _upstream() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                data, peer = sock.recvfrom(65535)
            except OSError:
                return
            q = dns.message.from_wire(data)
            r = dns.message.make_response(q)
            r.answer.append(dns.rrset.from_text_list(q.question[0].name, 60, "IN", "A", ["203.0.113.11"]))
            sock.sendto(r.to_wire(), peer)

    threading.Thread(target=serve, daemon=True).start()
    return sock, sock.getsockname()[1]


def _qps(port: int) -> float:
    q = dns.message.make_query("one.one.one.one.", "A")
    n, end = 0, time.monotonic() + SECONDS
    while time.monotonic() < end:
        dns.query.udp(q, "127.0.0.1", port=port, timeout=2)
        n += 1
    return n / SECONDS


def _proxy(upstream_port: int) -> object:
    from membrane.proxy.dns import DNSAnswerer, UDPListener
    from tests.unit.l7_harness import context

    answerer = DNSAnswerer(lambda *_a: None)
    ctx = context("dns", 53, ("127.0.0.1", upstream_port), [{"matchPattern": "*"}], [], protocol=17)
    return UDPListener(0, lambda _p, client, _o: ctx, answerer, transparent=False, host="127.0.0.1")


def _learn_times() -> tuple[list[float], list[float]]:
    from tests.unit.test_fqdn_policy_sync import agent

    sync, _net, _p, _s = agent()
    new, known = [], []
    for i in range(LEARNS):
        ip = f"198.18.{i // 250}.{i % 250 + 1}"
        start = time.perf_counter()
        sync.learn_dns(7, "one.one.one.one", [ip], ttl=300, now=10.0)
        new.append((time.perf_counter() - start) * 1e3)
        start = time.perf_counter()
        sync.learn_dns(7, "one.one.one.one", [ip], ttl=300, now=10.0)
        known.append((time.perf_counter() - start) * 1e3)
    return new, known


def run(runs: int) -> list[Measurement]:
    name = "DNS proxy (loopback)"
    qps = Measurement(name, "A queries/s, one client, through the DNS proxy", "queries/s", [],
                      baseline_name="same upstream, direct")
    learn = Measurement(name, "learn_dns for a new selected address (identity, map, ipcache; in-memory datapath)",
                        "ms", [], baseline_name="learn_dns for a known address", higher_is_better=False)
    upstream, port = _upstream()
    proxy = _proxy(port)
    try:
        for _ in range(runs):
            qps.baseline.append(_qps(port))
            qps.subject.append(_qps(proxy.port))  # type: ignore[attr-defined]
            new, known = _learn_times()
            learn.subject.append(sorted(new)[len(new) // 2])
            learn.baseline.append(sorted(known)[len(known) // 2])
    finally:
        proxy.close()  # type: ignore[attr-defined]
        upstream.close()
    return [qps, learn]
