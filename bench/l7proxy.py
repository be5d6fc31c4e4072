"""The HTTP L7 proxy's cost: requests/s and latency through the proxy against the same path direct.

One 2-node lab, a Death Star (the lab's starwars workload) on one node and a client pod on the other;
``bench/l7load.py`` runs in the client pod (keep-alive GET /v1, 1 and 16 connections, SECONDS each).
Direct = no policy; subject = an ``http: [{}]`` visibility rule on the server's port 80, which sends
every request through the node's proxy (same path otherwise). The two are interleaved per run.
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


def _load(lab: str, url: str, conns: int) -> dict:
    out = membrane(lab, "exec", "client", "--", sys.executable, LOAD, url, str(conns), str(SECONDS),
                   timeout=SECONDS + 60)
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
                membrane(lab, "delete", "-f", "-", input=_manifest(VISIBILITY))
                if proxied["errors"] or direct["errors"]:
                    raise RuntimeError(f"HTTP errors: direct {direct}, proxied {proxied}")
                for key, field in (("rps", "rps"), ("p50", "p50_ms"), ("p99", "p99_ms")):
                    rows[f"{key}{conns}"].subject.append(proxied[field])
                    rows[f"{key}{conns}"].baseline.append(direct[field])
            membrane(lab, "apply", "-f", "-", input=_manifest(VISIBILITY))
            _load(lab, url, 1)
            memory.subject.append(_idle_memory(lab, ip))
            membrane(lab, "delete", "-f", "-", input=_manifest(VISIBILITY))
    return [*rows.values(), memory]
