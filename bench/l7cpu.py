"""The HTTP proxy's CPU per request on loopback, without a lab: ``python bench/l7cpu.py [SECONDS]``.

This process runs the proxy server (:class:`membrane.proxy.server.ProxyServer` with the HTTP handler and
a visibility rule, ``http: [{}]``), and every request and response becomes a Hubble flow in a flow ring
with the agent's default metrics plus ``httpV2`` (``MEMBRANE_BENCH_L7_METRICS`` to change), as the
agent's ``ProxyManager`` makes them (lazily where the tree has membrane/hubble/l7lazy.py). The upstream (a minimal
HTTP server) and the client (``bench/l7load.py``) run in their own processes, so this process's CPU
time (``os.times()`` user + sys) divided by the requests served is the proxy's cost per request,
including its share of the loopback kernel work. Prints one JSON line per connection count.

Self-contained (imports only ``membrane``), so an older tree can be measured with its own interpreter:
``/path/to/tree/.venv/bin/python bench/l7cpu.py``, or this file with ``PYTHONPATH=/path/to/tree``. Needs root (IP_TRANSPARENT on the listener).
``--profile FILE`` writes a pstats profile (yappi, CPU clock, all threads; yappi is not installed by
``make setup``: ``.venv/bin/pip install yappi``) of the proxy to FILE (one run, 16 connections).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable

from membrane.hubble.events import EndpointInfo
from membrane.hubble.l7flow import l7_flow
from membrane.hubble.metrics import HubbleMetrics, Registry
from membrane.hubble.ring import FlowRing
from membrane.policy.l7 import Redirect
from membrane.proxy.http import handle_http
from membrane.proxy.registry import L7Context
from membrane.proxy.registry import Registry as Handlers
from membrane.proxy.server import ProxyServer, upstream_opener

# the agent's default metrics plus httpV2 (its request counter and duration histogram)
METRICS = os.environ.get("MEMBRANE_BENCH_L7_METRICS", "flow drop tcp port-distribution icmp httpV2").split()
LOAD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "l7load.py")
BODY = b'{"id": 1, "name": "Death Star"}\n' * 4
UPSTREAM = f"""
import asyncio, sys
RESPONSE = b"HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\ncontent-length: {len(BODY)}\\r\\n\\r\\n" + {BODY!r}
class P(asyncio.Protocol):
    def connection_made(self, t): self.t, self.buf = t, b""
    def data_received(self, d):
        self.buf += d
        n = self.buf.count(b"\\r\\n\\r\\n")
        if n:
            self.buf = self.buf[self.buf.rfind(b"\\r\\n\\r\\n") + 4:]
            self.t.write(RESPONSE * n)
async def main():
    srv = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await srv.serve_forever()
asyncio.run(main())
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


def _pod(ip: str) -> EndpointInfo:  # what the agent's index answers for a pod (labels as in the lab)
    name = f"pod-{ip.rsplit('.', 1)[-1]}"
    return EndpointInfo(identity=1000, namespace="default", pod_name=name, endpoint_id=1, cluster_name="default",
                        labels=("k8s:app=ds", "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=default",
                                "k8s:io.cilium.k8s.policy.cluster=default",
                                "k8s:io.cilium.k8s.policy.serviceaccount=default", "k8s:io.kubernetes.pod.namespace=default"),
                        workloads=((name, "Pod"),))


def _eager(ring: FlowRing, metrics: HubbleMetrics) -> Callable[[], Callable[[object], None]]:
    """Trees before lazy L7 flows: each record built at once (ProxyManager.emit, a per-connection endpoint cache)."""

    def connection() -> Callable[[object], None]:
        cache: dict = {}

        def emit(record: object) -> None:
            flow = l7_flow(record, _pod, "bench", endpoints=cache)  # type: ignore[arg-type]
            ring.append(flow)
            metrics.process(flow)

        return emit

    return connection


def _proxy(upstream: tuple[str, int]) -> tuple[ProxyServer, int]:
    # MEMBRANE_BENCH_L7_NO_FLOWS=1: records dropped
    ring, metrics = FlowRing(), HubbleMetrics(Registry(), METRICS)
    flows = os.environ.get("MEMBRANE_BENCH_L7_NO_FLOWS") != "1"
    redirect = Redirect("ingress", 6, upstream[1], "http")

    def sink(entry: object, key: object, seconds: float) -> None:  # as the agent's (proxy_sync.hubble_sink)
        ring.append(entry)  # type: ignore[arg-type]
        if key is None:
            metrics.process(entry.flow())  # type: ignore[attr-defined]
        else:
            metrics.process_l7_keyed(key, entry.flow, seconds)  # type: ignore[attr-defined]

    try:  # lazy L7 flows (membrane/hubble/l7lazy.py), as the agent's ProxyManager makes them
        from membrane.hubble.l7lazy import L7Flows  # noqa: PLC0415 — trees before it build at once
        connection = L7Flows("bench", _pod, sink).connection
    except ImportError:
        connection = _eager(ring, metrics)

    def describe(port: int, client: tuple[str, int], _original: tuple[str, int]) -> L7Context:
        emit = connection() if flows else (lambda _record: None)
        return L7Context(redirect=redirect, endpoint_id=1, client=client, original_dst=upstream, src_identity=1000,
                         dst_identity=1001, rules=[{}], open_upstream=upstream_opener(client, upstream, port),
                         emit=emit)

    handlers = Handlers()
    handlers.register("http", handle_http)
    workers = int(os.environ.get("MEMBRANE_BENCH_L7_WORKERS", "0")) or None  # default: the agent's
    server = ProxyServer(handlers, describe, workers)
    server.start()
    port = next(p for p in range(19000, 20000) if _bindable(p))  # a proxy port: its mark fits SO_MARK
    server.listen(port)
    return server, port


def _run(port: int, conns: int, seconds: float) -> dict:
    before = os.times()
    out = subprocess.run([sys.executable, LOAD, f"http://127.0.0.1:{port}/v1", str(conns), str(seconds)],
                         check=True, capture_output=True, text=True).stdout
    after = os.times()
    load = json.loads(out)
    cpu = (after.user - before.user) + (after.system - before.system)
    return {"conns": conns, "rps": round(load["rps"]), "p50_ms": round(load["p50_ms"], 3),
            "cpu_us_per_request": round(cpu / max(load["requests"], 1) * 1e6, 1),
            "sys_us_per_request": round((after.system - before.system) / max(load["requests"], 1) * 1e6, 1),
            "errors": load["errors"],
            "load": round(os.getloadavg()[0], 2)}


def main() -> None:
    args = sys.argv[1:]
    profile = None
    if "--profile" in args:
        i = args.index("--profile")
        profile = args[i + 1]
        del args[i:i + 2]
    seconds = float(args[0]) if args else 3.0
    up_port = _free_port()
    upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(up_port)], stdout=subprocess.PIPE, text=True)
    try:
        assert upstream.stdout is not None and upstream.stdout.readline().strip() == "ready"
        server, port = _proxy(("127.0.0.1", up_port))
        try:
            _run(port, 1, 0.5)  # warm
            if profile:
                import yappi  # noqa: PLC0415 — only for --profile
                yappi.set_clock_type("cpu")
                yappi.start()
                print(json.dumps(_run(port, 16, seconds)))
                yappi.stop()
                yappi.get_func_stats().save(profile, type="pstat")
                return
            for conns in (1, 16):
                print(json.dumps(_run(port, conns, seconds)), flush=True)
        finally:
            server.stop()
    finally:
        upstream.terminate()
        upstream.wait(5)
    time.sleep(0)


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
