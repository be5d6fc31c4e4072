"""``membrane connectivity perf``: cilium-cli's network performance matrix on the cilium-test-1
deployment: TCP_STREAM (iperf3) and TCP_RR (:mod:`perf_rr`) from the client pod to an echo pod on the
same node and on the other node, by pod IP and through a ClusterIP Service, printed as one table.

Servers run in the echo pods' namespaces for the time of one measurement and are stopped by their PID.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

import yaml

from membrane.cli.arguments import CLIError
from membrane.cli.connectivity_policies import NAMESPACE

IPERF_PORT, RR_PORT = 5201, 7001
_SERVICE = """apiVersion: v1
kind: Service
metadata: {{name: perf-{role}, namespace: cilium-test-1}}
spec:
  selector: {{name: {role}}}
  ports: [{{name: iperf, port: {iperf}, targetPort: {iperf}}}, {{name: rr, port: {rr}, targetPort: {rr}}}]
"""


def add_parser(csub: Any, lab_arg: Any) -> None:
    q = csub.add_parser("perf", help="TCP_RR / TCP_STREAM between the test pods, by pod IP and by Service")
    lab_arg(q)
    q.add_argument("--duration", type=float, default=3.0, help="seconds per measurement (default 3)")
    q.add_argument("--timeout", type=float, default=120, help="seconds to wait for the test pods (default 120)")


def _in_pod(pid: int, *cmd: str) -> list[str]:
    return ["nsenter", "-t", str(pid), "--net", "--", *cmd]


def _measure(client_pid: int, server_pid: int, host: str, test: str, duration: float) -> str:
    if test == "TCP_STREAM":
        server = subprocess.Popen(_in_pod(server_pid, "iperf3", "-s", "-1", "-p", str(IPERF_PORT)),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cmd = _in_pod(client_pid, "iperf3", "-c", host, "-p", str(IPERF_PORT), "-t", str(duration), "-J")
    else:
        server = subprocess.Popen(_in_pod(server_pid, sys.executable, "-m", "membrane.cli.perf_rr", "server",
                                          str(RR_PORT)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cmd = _in_pod(client_pid, sys.executable, "-m", "membrane.cli.perf_rr", "client", host, str(RR_PORT),
                      str(duration))
    try:
        time.sleep(0.5)  # the server binds
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30)
        if proc.returncode != 0:
            return f"failed ({proc.stderr.strip()[:60] or proc.returncode})"
        if test == "TCP_STREAM":
            bps = json.loads(proc.stdout)["end"]["sum_received"]["bits_per_second"]
            return f"{bps / 1e6:.0f} Mb/s"
        count, seconds = proc.stdout.split()
        return f"{int(count) / float(seconds):.0f} OP/s"
    finally:
        server.kill()  # only the server this measurement started
        server.wait()


def run(args: argparse.Namespace) -> int:
    from membrane.cli.connectivity_deploy import deploy_test_pods, pause_pids
    from membrane.cli.target import cluster_store
    from membrane.model.validate import validate_object

    if args.duration <= 0:
        raise CLIError("--duration must be positive")
    store = cluster_store(args.lab)
    topo = deploy_test_pods(store, args.lab, args.timeout)
    roles = ("echo-same-node", "echo-other-node")
    store.apply_many([validate_object(yaml.safe_load(_SERVICE.format(role=r, iperf=IPERF_PORT, rr=RR_PORT)), "perf")
                      for r in roles])
    deadline = time.monotonic() + 30
    services: dict[str, str] = {}
    while len(services) < 2 and time.monotonic() < deadline:
        for r in roles:
            ip = ((store.get("core", "Service", NAMESPACE, f"perf-{r}") or {}).get("spec") or {}).get("clusterIP")
            if ip:
                services[r] = ip
        time.sleep(0.3)
    pids = pause_pids(args.lab)
    client = pids[topo.pods["client"].name]
    rows = [["Scenario", "Node", "Test", "Duration", "Value"]]
    for role in roles:
        server = pids[topo.pods[role].name]
        where = "same-node" if role == "echo-same-node" else "other-node"
        for scenario, host in (("pod-to-pod", topo.pods[role].ip), ("pod-to-service", services.get(role, ""))):
            for test in ("TCP_RR", "TCP_STREAM"):
                value = _measure(client, server, host, test, args.duration) if host else "no ClusterIP"
                print(f"  [.] {scenario} {where} {test}: {value}", flush=True)
                rows.append([scenario, where, test, f"{args.duration:g}s", value])
    from membrane.cli.tabwriter import tabwrite

    print(f"\n🔥 Network Performance Test Summary [{NAMESPACE}]:")
    print(tabwrite("\n".join("\t| ".join(r) for r in rows), 0, 1))
    failed = any(r[-1].startswith(("failed", "no ")) for r in rows[1:])
    return 1 if failed else 0
