"""bench/l7load.py's open loop (a fixed aggregate rate) and the latency goal on its row."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time

from bench.goals import GOALS, evaluate
from bench.harness import Measurement

LOAD = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "l7load.py")


class _Slow(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    delay = 0.0

    def do_GET(self) -> None:  # noqa: N802 — the http.server hook
        time.sleep(self.delay)
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args: object) -> None:
        pass


def _run(delay: float, *args: str) -> dict:
    handler = type("H", (_Slow,), {"delay": delay})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        out = subprocess.run([sys.executable, LOAD, f"http://127.0.0.1:{server.server_port}/", *args],
                             capture_output=True, text=True, check=True, timeout=30).stdout
    finally:
        server.shutdown()
        server.server_close()
    return json.loads(out)


def test_open_loop_sends_at_the_rate_not_as_fast_as_answers_come() -> None:
    out = _run(0.0, "4", "1.0", "200")
    assert 170 <= out["requests"] <= 205, out  # 200/s for 1 s over 4 connections, not thousands
    assert out["offered_rps"] == 200 and out["errors"] == 0


def test_open_loop_charges_a_late_answer_to_the_requests_it_delays() -> None:
    # one connection, 100/s (due every 10 ms) against a 30 ms server: each request is due before the
    # last answer is in, so the backlog grows by 20 ms a request and latency from when it was due
    # with it (about 0.3 s at the median), far past the service time
    out = _run(0.03, "1", "1.0", "100")
    assert out["p50_ms"] > 150 and out["late"] > 0, out
    closed = _run(0.03, "1", "1.0")  # closed loop: as fast as answers come, no backlog to count
    assert closed["requests"] <= 34 and closed["offered_rps"] == 0 and closed["late"] == 0, closed


def test_latency_goal_reads_the_open_loop_overhead_row() -> None:
    goal = next(g for g in GOALS if g.suite == "l7proxy" and "latency" in g.what)
    name = "HTTP L7 proxy (2 nodes)"
    metric = "p50 latency overhead, 16 connections, open loop at half the proxy's closed-loop rate, proxied - direct"
    closed = Measurement(name, "p50 latency, 16 connection(s), through the proxy", "ms", [5.6], [2.2],
                         baseline_name="same path, direct", higher_is_better=False)
    met = evaluate([closed, Measurement(name, metric, "ms", [0.3, 0.5, 0.4], higher_is_better=False)], goals=[goal])
    missed = evaluate([closed, Measurement(name, metric, "ms", [1.4, 2.0, 0.2], higher_is_better=False)], goals=[goal])
    assert met[0].status == "MET" and missed[0].status == "MISSED"
    assert [c.value for c in met[0].checks] == [0.4]  # the open-loop row only, not the closed-loop p50
