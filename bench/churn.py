"""Pod churn (the kube-burner scenario): 300 pods on a 3-node lab.

Ours: a Deployment of 300 replicas applied at once; pods/s until every pod is Ready, and CNI ADD
latency as the runtime sees it (plugin exec included). Baseline, measured in the same run with the
same parallelism: the bare kernel work of a pod sandbox (netns, veth pair, address, up, route) done
with ``ip`` and no Membrane at all — the floor any CNI sits on.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from bench.harness import Measurement
from membrane.model.naming import LabPaths
from membrane.store.etcd import EtcdClient
from membrane.store.resources import ResourceStore

PODS = int(os.environ.get("MEMBRANE_BENCH_PODS", "300"))
WORKERS = 8  # the lab kubelet's pod-start parallelism
MEMBRANE = os.path.join(os.path.dirname(sys.executable), "membrane")

DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {{name: burner}}
spec:
  replicas: {n}
  selector: {{matchLabels: {{app: burner}}}}
  template:
    metadata: {{labels: {{app: burner}}}}
    spec:
      containers: [{{name: c, image: busybox}}]
"""


def _m(lab: str, *args: str, input: str | None = None, timeout: float = 600) -> str:
    proc = subprocess.run([MEMBRANE, "--lab", lab, *args], input=input, text=True, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"membrane {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def _ours(run: int) -> tuple[float, list[float]]:
    lab = f"bench{secrets.token_hex(2)}"
    try:
        _m(lab, "lab", "create", "--nodes", "3", timeout=300)
        start = time.monotonic()
        _m(lab, "apply", "-f", "-", input=DEPLOYMENT.format(n=PODS))
        # Poll the store in-process: a CLI process per poll would steal the CPU being measured.
        store = ResourceStore(EtcdClient(LabPaths(lab).etcd_endpoint), "default")
        while True:
            items = store.list("core", "Pod", "default")[0]
            ready = sum(1 for p in items if any(c.get("type") == "Ready" and c.get("status") == "True"
                                                 for c in p.get("status", {}).get("conditions", [])))
            if ready >= PODS:
                break
            if time.monotonic() - start > 600:
                raise RuntimeError(f"only {ready}/{PODS} pods Ready after 600 s")
            time.sleep(0.5)
        elapsed = time.monotonic() - start
        with open(f"/run/membrane/{lab}/cni-timings.jsonl") as fh:
            adds = [json.loads(line)["seconds"] for line in fh if '"ADD"' in line]
        return PODS / elapsed, adds
    finally:
        subprocess.run([MEMBRANE, "--lab", lab, "lab", "delete"], capture_output=True, timeout=300)


def _baseline_one(node_ns: str, i: int) -> float:
    ns = f"{node_ns}-p{i}"
    host = f"bh{i}"
    ip = f"10.{(i >> 8) & 255}.{i & 255}.2"
    node_side = f"link add {host} type veth peer name eth0 netns {ns}\nlink set {host} up\nroute add {ip}/32 dev {host}\n"
    pod_side = f"link set lo up\naddr add {ip}/32 dev eth0\nlink set eth0 up\n"
    t0 = time.monotonic()
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    subprocess.run(["ip", "-n", node_ns, "-batch", "-"], input=node_side, text=True, check=True, capture_output=True)
    subprocess.run(["ip", "-n", ns, "-batch", "-"], input=pod_side, text=True, check=True, capture_output=True)
    return time.monotonic() - t0


def _baseline() -> tuple[float, list[float]]:
    node_ns = f"benchbase{secrets.token_hex(2)}"
    subprocess.run(["ip", "netns", "add", node_ns], check=True)
    try:
        start = time.monotonic()
        with ThreadPoolExecutor(WORKERS) as pool:
            lat = list(pool.map(lambda i: _baseline_one(node_ns, i), range(PODS)))
        return PODS / (time.monotonic() - start), lat
    finally:
        for i in range(PODS):
            subprocess.run(["ip", "netns", "del", f"{node_ns}-p{i}"], capture_output=True)
        subprocess.run(["ip", "netns", "del", node_ns], capture_output=True)


def run(runs: int) -> list[Measurement]:
    rate = Measurement("pod churn (300 pods, 3 nodes)", "pods/s to Ready", "pods/s", [],
                       baseline_name="bare netns+veth via ip", notes=f"{PODS} pods, {WORKERS} parallel starts")
    p50 = Measurement("pod churn (300 pods, 3 nodes)", "CNI ADD p50", "ms", [], baseline_name="bare netns+veth via ip",
                      higher_is_better=False)
    p99 = Measurement("pod churn (300 pods, 3 nodes)", "CNI ADD p99", "ms", [], baseline_name="bare netns+veth via ip",
                      higher_is_better=False)
    for i in range(runs):
        b_rate, b_lat = _baseline()
        o_rate, o_lat = _ours(i)
        print(f"  run {i + 1}: ours {o_rate:.1f} pods/s (ADD p50 {statistics.median(o_lat) * 1e3:.1f} ms), "
              f"baseline {b_rate:.1f} pods/s", flush=True)
        rate.subject.append(o_rate)
        rate.baseline.append(b_rate)
        p50.subject.append(_percentile(o_lat, 50) * 1e3)
        p50.baseline.append(_percentile(b_lat, 50) * 1e3)
        p99.subject.append(_percentile(o_lat, 99) * 1e3)
        p99.baseline.append(_percentile(b_lat, 99) * 1e3)
    return [rate, p50, p99]
