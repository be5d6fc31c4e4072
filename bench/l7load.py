"""HTTP/1.1 keep-alive load: ``python bench/l7load.py URL CONNECTIONS SECONDS [RATE]`` prints JSON
``{"requests": n, "rps": r, "p50_ms": a, "p99_ms": b, "errors": e}`` (one thread per connection).

Without RATE, closed loop: each connection sends its next request as soon as the last answer is in
(at saturation the latency is the connections over the rate). With RATE (requests/s, all connections
together), open loop as Nighthawk or wrk2 at a set rate: connection i sends at start + (i + k·C)/RATE,
and a latency counts from when the request was due, not from when it went out, so a late answer
that delays the next request is charged to that request too (no coordinated omission); ``late`` counts
requests that went out more than a period late. The open loop runs all connections in one thread
(selectors): with a thread per connection, Python's GIL hand-offs (up to its 5 ms switch interval)
were in every latency, direct ones included."""

from __future__ import annotations

import http.client
import json
import selectors
import socket
import statistics
import sys
import threading
import time
from urllib.parse import urlsplit


def worker(url: str, until: float, lat: list[float], errors: list[int]) -> None:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5)
    path = u.path or "/"
    while time.monotonic() < until:
        start = time.perf_counter()
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                errors.append(resp.status)
        except OSError:
            errors.append(0)
            conn.close()
            conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5)
            continue
        lat.append(time.perf_counter() - start)
    conn.close()


class _Paced:
    """One keep-alive connection of the open loop: a request due every ``period`` from ``due``."""

    def __init__(self, addr: tuple[str, int], request: bytes, due: float, period: float) -> None:
        self.sock = socket.create_connection(addr, timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.request, self.due, self.period = request, due, period
        self.busy, self.buf = False, b""

    def send(self) -> None:
        self.sock.sendall(self.request)  # a few dozen bytes: fits the empty send buffer at once
        self.busy, self.buf = True, b""

    def answered(self) -> int | None:
        """The status once the whole response is in (Content-Length or chunked), else None."""
        head_end = self.buf.find(b"\r\n\r\n")
        if head_end < 0:
            return None
        head = self.buf[:head_end].decode("latin-1").lower()
        body = self.buf[head_end + 4:]
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip() == "content-length":
                if len(body) < int(value):
                    return None
                break
            if name.strip() == "transfer-encoding" and "chunked" in value:
                if not body.endswith(b"0\r\n\r\n"):
                    return None
                break
        return int(head.split(" ", 2)[1])


def paced(url: str, conns: int, rate: float, seconds: float) -> tuple[list[float], list[int], int]:
    """Open loop in one thread (no GIL hand-offs between connection threads in the latency):
    connection i's requests are due at begin + (i + k·conns)/rate; latency from when each was due."""
    u = urlsplit(url)
    host, port = u.hostname or "", u.port or 80
    request = f"GET {u.path or '/'} HTTP/1.1\r\nHost: {u.netloc}\r\n\r\n".encode()
    begin, period = time.perf_counter() + 0.05, conns / rate
    end = begin + seconds
    peers = [_Paced((host, port), request, begin + i / rate, period) for i in range(conns)]
    sel = selectors.DefaultSelector()
    for peer in peers:
        sel.register(peer.sock, selectors.EVENT_READ, peer)
    lat: list[float] = []
    errors: list[int] = []
    late = 0
    try:
        while True:
            now = time.perf_counter()
            for peer in peers:
                if not peer.busy and peer.due < end and peer.due <= now:
                    if now - peer.due > peer.period:
                        late += 1
                    peer.send()
            waiting = [p.due for p in peers if not p.busy and p.due < end]
            if not waiting and not any(p.busy for p in peers):
                break
            timeout = max(0.0, min(waiting) - now) if waiting else 1.0
            for key, _ in sel.select(timeout):
                peer = key.data
                data = peer.sock.recv(65536)
                if not data:
                    raise ConnectionError("the server closed a keep-alive connection")
                peer.buf += data
                status = peer.answered()
                if status is not None:
                    lat.append(time.perf_counter() - peer.due)
                    if status != 200:
                        errors.append(status)
                    peer.busy, peer.due = False, peer.due + peer.period
            if time.perf_counter() > end + 10:
                errors.append(0)  # answers still missing 10 s after the last was due
                break
    finally:
        for peer in peers:
            peer.sock.close()
    return lat, errors, late


def main() -> None:
    url, conns, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    rate = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    until = time.monotonic() + seconds
    lats: list[list[float]] = [[] for _ in range(conns)]
    errors: list[int] = []
    late = 0
    threads = [] if rate > 0 else [threading.Thread(target=worker, args=(url, until, lats[i], errors))
                                   for i in range(conns)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if rate > 0:
        lats[0], errors, late = paced(url, conns, rate, seconds)
    elapsed = time.monotonic() - start
    all_lat = sorted(x for lat in lats for x in lat)
    p99 = all_lat[int(len(all_lat) * 0.99) - 1] * 1e3 if all_lat else 0.0
    print(json.dumps({"requests": len(all_lat), "rps": len(all_lat) / elapsed,
                      "p50_ms": statistics.median(all_lat) * 1e3 if all_lat else 0.0, "p99_ms": p99,
                      "errors": len(errors), "offered_rps": rate, "late": late}))


if __name__ == "__main__":
    main()
