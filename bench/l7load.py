"""HTTP/1.1 keep-alive load: ``python bench/l7load.py URL CONNECTIONS SECONDS [RATE]`` prints JSON
``{"requests": n, "rps": r, "p50_ms": a, "p99_ms": b, "errors": e}`` (one thread per connection).

Without RATE, closed loop: each connection sends its next request as soon as the last answer is in
(at saturation the latency is the connections over the rate). With RATE (requests/s, all connections
together), open loop as Nighthawk or wrk2 at a set rate: connection i sends at start + (i + k·C)/RATE,
and a latency counts from when the request was due, not from when it went out, so a late answer
that delays the next request is charged to that request too (no coordinated omission); ``late`` counts
requests that went out more than a period late."""

from __future__ import annotations

import http.client
import json
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


def paced(url: str, until: float, lat: list[float], errors: list[int], first: float, period: float,
          late: list[int]) -> None:
    """Open loop: requests due at first, first + period, …; latency from when each was due."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5)
    path = u.path or "/"
    due = first
    while due < until:
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        elif now - due > period:
            late.append(1)
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
            due += period
            continue
        lat.append(time.perf_counter() - due)
        due += period
    conn.close()


def main() -> None:
    url, conns, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    rate = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    until = time.monotonic() + seconds
    lats: list[list[float]] = [[] for _ in range(conns)]
    errors: list[int] = []
    late: list[int] = []
    if rate > 0:
        begin, period = time.perf_counter() + 0.05, conns / rate
        end = begin + seconds
        threads = [threading.Thread(target=paced, args=(url, end, lats[i], errors, begin + i / rate, period, late))
                   for i in range(conns)]
    else:
        threads = [threading.Thread(target=worker, args=(url, until, lats[i], errors)) for i in range(conns)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    all_lat = sorted(x for lat in lats for x in lat)
    p99 = all_lat[int(len(all_lat) * 0.99) - 1] * 1e3 if all_lat else 0.0
    print(json.dumps({"requests": len(all_lat), "rps": len(all_lat) / elapsed,
                      "p50_ms": statistics.median(all_lat) * 1e3 if all_lat else 0.0, "p99_ms": p99,
                      "errors": len(errors), "offered_rps": rate, "late": len(late)}))


if __name__ == "__main__":
    main()
