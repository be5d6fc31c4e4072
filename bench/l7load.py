"""HTTP/1.1 keep-alive load: ``python bench/l7load.py URL CONNECTIONS SECONDS`` prints JSON
``{"requests": n, "rps": r, "p50_ms": a, "p99_ms": b, "errors": e}`` (one thread per connection)."""

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


def main() -> None:
    url, conns, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    until = time.monotonic() + seconds
    lats: list[list[float]] = [[] for _ in range(conns)]
    errors: list[int] = []
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
                      "errors": len(errors)}))


if __name__ == "__main__":
    main()
