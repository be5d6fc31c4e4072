"""Pod → ClusterIP against pod → pod, with 10 000 services loaded in the client node's LB maps.

A 2-node lab: a server pod (iperf3 + bench/rr.c server) behind a ClusterIP Service, clients on the same
node and across nodes. Each sample measures the same client against the Service's ClusterIP (subject)
and against the server pod's own IP (baseline, same run, interleaved), TCP throughput, TCP_RR and
TCP_CRR pinned to one CPU, while the client node's LB maps hold 10 000 extra services (5 backends each:
60 000 entries fit Cilium's default 65 536-entry LB map; 10 backends each would need a bigger map).
"""

from __future__ import annotations

import shutil
import tempfile

from bench.datapath import BACKENDS_EACH, EXTRA_SERVICES, PODS, load_services, services_left
from bench.harness import Measurement
from bench.netbench import (
    IPERF_PORT,
    RR_PORT,
    Servers,
    bench_lab,
    build_rr,
    measure,
    membrane,
    wait_listening,
    wait_pods,
    wait_until,
)
from membrane.lab.paths import LabPaths

SERVICE = f"""apiVersion: v1
kind: Service
metadata: {{name: bench-srv}}
spec:
  selector: {{app: bench-srv}}
  ports: [{{name: iperf, port: {IPERF_PORT}}}, {{name: rr, port: {RR_PORT}}}]
"""


def run(runs: int) -> list[Measurement]:
    name = f"pod→ClusterIP with {EXTRA_SERVICES:,} services loaded (2 nodes, cpu-pinned)"
    rows: dict[tuple[str, str], Measurement] = {}
    paths_ = ("same node", "across nodes")
    for metric, unit in (("TCP 1 stream", "Gbit/s"), ("TCP_RR", "req/s"), ("TCP_CRR", "conn/s")):
        for path in paths_:
            rows[(metric, path)] = Measurement(name, f"{metric} {path} via ClusterIP", unit, [],
                                               baseline_name="same client → pod IP directly")
    workdir = tempfile.mkdtemp(prefix="membrane-bench-")
    try:
        rr = build_rr(workdir)
        with bench_lab(2) as lab:
            membrane(lab, "apply", "-f", "-", input=PODS + "---\n" + SERVICE)
            pods = wait_pods(lab, ["bench-srv", "bench-cli-local", "bench-cli-remote"])
            paths = LabPaths(lab)
            ip = {n: p["status"]["podIP"] for n, p in pods.items()}
            netns = {n: paths.pod_netns("default", n) for n in ip}
            import json

            def cluster_ip() -> str:
                svc = json.loads(membrane(lab, "get", "svc", "bench-srv", "-o", "json"))
                return str(svc.get("spec", {}).get("clusterIP") or "")

            vip = str(wait_until(cluster_ip, 30))
            clients = {"same node": netns["bench-cli-local"], "across nodes": netns["bench-cli-remote"]}
            for node in ("k8s-w1", "k8s-ctr"):
                load_services(paths.bpffs_dir(node))
            servers = Servers(netns["bench-srv"], rr)
            try:
                wait_listening(netns["bench-srv"])
                for i in range(runs):
                    for path in paths_:
                        order = (True, False) if i % 2 == 0 else (False, True)
                        samples = {}
                        for via_service in order:
                            samples[via_service] = measure(clients[path], vip if via_service else ip["bench-srv"], rr)
                        for metric, attr in (("TCP 1 stream", "gbits"), ("TCP_RR", "rr"), ("TCP_CRR", "crr")):
                            rows[(metric, path)].subject.append(getattr(samples[True], attr))
                            rows[(metric, path)].baseline.append(getattr(samples[False], attr))
                        print(f"  run {i + 1} {path:12}: RR via service {samples[True].rr:,.0f}/s, "
                              f"direct {samples[False].rr:,.0f}/s", flush=True)
                still = services_left(paths.bpffs_dir("k8s-ctr"))
            finally:
                servers.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    note = (f"{EXTRA_SERVICES:,} extra services × {BACKENDS_EACH} backends in each client node's LB maps "
            f"({still:,} extra service rows still present at the end); iperf3 3 s, RR/CRR 1.5 s, one CPU")
    for m in rows.values():
        m.notes = note
    return list(rows.values())
