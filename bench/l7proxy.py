"""The HTTP L7 proxy's cost: requests/s and latency through the proxy against the same path direct.

One 2-node lab, a Death Star (the lab's starwars workload) on one node and a client pod on the other;
``bench/l7load.py`` runs in the client pod (keep-alive GET /v1, 1 and 16 connections, SECONDS each).
Direct = no policy; subject = an ``http: [{}]`` visibility rule on the server's port 80, which sends
every request through the node's proxy (same path otherwise). The two are interleaved per run.
Closed loop (each connection sends when its last answer is in) gives requests/s and a latency that,
at 16 connections at saturation, is the connections over the rate (the throughput ratio again). Open
loop, as Envoy's published overhead is measured (Nighthawk at a set rate): 16 connections at one fixed
aggregate rate for both direct and proxied, half of the proxy's closed-loop rate of the same run,
latency counted from when each request was due; its p50 overhead (proxied − direct, same run) is the
latency goal's row.
Memory: the server node's agent RSS growth while the client holds IDLE idle connections through the
proxy, per 1 000 connections.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from bench.harness import Measurement
from bench.netbench import MEMBRANE, bench_lab, membrane, wait_pods
from membrane.lab.daemons import daemon_state

SECONDS = float(os.environ.get("MEMBRANE_BENCH_L7_SECONDS", "4"))
LOAD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "l7load.py")
IDLE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "l7idle.py")
IDLE = 1000
OPEN_CONNS = 16
SERVER = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "deathstar", "labels": {"app": "ds"}},
          "spec": {"nodeName": "k8s-w1", "containers": [{"name": "ds", "image": "quay.io/cilium/starwars",
                                                         "ports": [{"containerPort": 80}]}]}}
CLIENT = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "labels": {"app": "client"}},
          "spec": {"nodeName": "k8s-ctr", "containers": [{"name": "c", "image": "nicolaka/netshoot",
                                                          "command": ["sleep", "infinity"]}]}}
VISIBILITY = {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "l7-visibility"},
              "spec": {"endpointSelector": {"matchLabels": {"app": "ds"}},
                       "ingress": [{"toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}],
                                                 "rules": {"http": [{}]}}]}]}}


def _load(lab: str, url: str, conns: int, rate: float = 0.0) -> dict:
    """Closed loop, or open loop at ``rate`` requests/s (all connections together) when given."""
    out = membrane(lab, "exec", "client", "--", sys.executable, LOAD, url, str(conns), str(SECONDS),
                   *([f"{rate:.1f}"] if rate else []), timeout=SECONDS + 60)
    return json.loads(out.strip().splitlines()[-1])


def _manifest(*objs: dict) -> str:
    return "\n---\n".join(json.dumps(o) for o in objs)


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def _idle_memory(lab: str, ip: str) -> float:
    """KiB of agent RSS per 1 000 idle proxied connections (the policy must be in place)."""
    agent = daemon_state(lab, "agent-k8s-w1")
    assert agent is not None and agent.pid, "agent-k8s-w1 is not running"
    before = _rss_kib(agent.pid)
    hold = subprocess.Popen([MEMBRANE, "--lab", lab, "exec", "client", "--", sys.executable, IDLE_SCRIPT, ip, "80",
                             str(IDLE), "20"], stdout=subprocess.PIPE, text=True)
    try:
        opened = int((hold.stdout.readline() if hold.stdout else "0").strip() or 0)
        time.sleep(2)  # the proxy has accepted and set up every one
        grown = _rss_kib(agent.pid) - before
    finally:
        hold.kill()
        hold.wait()
    if opened < IDLE:
        raise RuntimeError(f"only {opened} of {IDLE} idle connections opened")
    return grown * 1000 / opened


def run(runs: int) -> list[Measurement]:
    name = "HTTP L7 proxy (2 nodes)"
    rows: dict[str, Measurement] = {}
    for conns in (1, 16):
        rows[f"rps{conns}"] = Measurement(name, f"requests/s keep-alive, {conns} connection(s), through the proxy",
                                          "req/s", [], baseline_name="same path, direct")
        rows[f"p50{conns}"] = Measurement(name, f"p50 latency, {conns} connection(s), through the proxy", "ms", [],
                                          baseline_name="same path, direct", higher_is_better=False)
        rows[f"p99{conns}"] = Measurement(name, f"p99 latency, {conns} connection(s), through the proxy", "ms", [],
                                          baseline_name="same path, direct", higher_is_better=False)
    opened = Measurement(name, f"p50 latency overhead, {OPEN_CONNS} connections, open loop at half the proxy's "
                         "closed-loop rate, proxied - direct", "ms", [], higher_is_better=False)
    for key in ("p50", "p99"):
        rows[f"open-{key}"] = Measurement(name, f"{key} latency, {OPEN_CONNS} connections, open loop at half the "
                                          "proxy's closed-loop rate, through the proxy", "ms", [],
                                          baseline_name="same path, direct, same rate", higher_is_better=False)
    offered = Measurement(name, f"open-loop rate offered ({OPEN_CONNS} connections, both paths)", "req/s", [])
    # requests that went out more than a period after they were due: the path (or the client) did not
    # keep up with the offered rate, and the open-loop latencies of that run measure a queue
    behind = Measurement(name, f"open-loop requests sent late, {OPEN_CONNS} connections, through the proxy", "%", [],
                         baseline_name="same path, direct, same rate", higher_is_better=False)
    memory = Measurement(name, f"agent memory per 1 000 idle proxied connections ({IDLE} held)", "KiB", [],
                         higher_is_better=False)
    with bench_lab(2) as lab:
        membrane(lab, "apply", "-f", "-", input=_manifest(SERVER, CLIENT))
        ip = wait_pods(lab, ["deathstar", "client"])["deathstar"]["status"]["podIP"]
        url = f"http://{ip}/v1"
        for _ in range(runs):
            for conns in (1, 16):
                direct = _load(lab, url, conns)
                membrane(lab, "apply", "-f", "-", input=_manifest(VISIBILITY))
                _load(lab, url, 1)  # warm: the policy is in and the proxy path is up
                proxied = _load(lab, url, conns)
                rate = proxied["rps"] / 2
                if conns == OPEN_CONNS:  # open loop, proxied then direct, at one rate
                    open_proxied = _load(lab, url, conns, rate)
                membrane(lab, "delete", "-f", "-", input=_manifest(VISIBILITY))
                if conns == OPEN_CONNS:
                    open_direct = _load(lab, url, conns, rate)
                    if open_proxied["errors"] or open_direct["errors"]:
                        raise RuntimeError(f"HTTP errors, open loop: direct {open_direct}, proxied {open_proxied}")
                    for key in ("p50", "p99"):
                        rows[f"open-{key}"].subject.append(open_proxied[f"{key}_ms"])
                        rows[f"open-{key}"].baseline.append(open_direct[f"{key}_ms"])
                    opened.subject.append(open_proxied["p50_ms"] - open_direct["p50_ms"])
                    behind.subject.append(100 * open_proxied["late"] / max(open_proxied["requests"], 1))
                    behind.baseline.append(100 * open_direct["late"] / max(open_direct["requests"], 1))
                    offered.subject.append(rate)
                if proxied["errors"] or direct["errors"]:
                    raise RuntimeError(f"HTTP errors: direct {direct}, proxied {proxied}")
                for key, field in (("rps", "rps"), ("p50", "p50_ms"), ("p99", "p99_ms")):
                    rows[f"{key}{conns}"].subject.append(proxied[field])
                    rows[f"{key}{conns}"].baseline.append(direct[field])
            membrane(lab, "apply", "-f", "-", input=_manifest(VISIBILITY))
            _load(lab, url, 1)
            memory.subject.append(_idle_memory(lab, ip))
            membrane(lab, "delete", "-f", "-", input=_manifest(VISIBILITY))
    return [*rows.values(), opened, offered, behind, memory]
