"""Flow events: what Hubble-style observability costs the datapath, and how many flows/s one agent takes.

- **events on vs off**: the same pod→pod TCP throughput / TCP_RR / TCP_CRR measured with the datapath's
  event ring buffer on (subject) and switched off through ``mb_config`` (baseline), interleaved in the
  same run, same node and across nodes. CRR is the case that matters: every connection makes events.
- **ingest**: the server node's agent pinned to one CPU (``taskset``), a CRR flood pinned to the other
  for a few seconds; flows/s the agent decoded into its flow ring, against events/s the datapath wrote
  (the baseline of this row), and how many events the ring buffer had to drop. On a shared machine the
  pinned agent gets what CPU the others leave, so the flood also reads the agent's own CPU time
  (/proc/PID/stat, all its threads): *flows per agent CPU-second* is events/s/core whatever the load.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time

from bench.datapath import PODS
from bench.harness import Measurement
from bench.netbench import (
    RR_PORT,
    Servers,
    bench_lab,
    build_rr,
    in_ns,
    measure,
    membrane,
    wait_listening,
    wait_pods,
)
from membrane.datapath.monitor import set_events_enabled
from membrane.lab.daemons import daemon_state
from membrane.lab.paths import LabPaths
from membrane.lab.record import load_record

FLOOD_SECONDS = float(os.environ.get("MEMBRANE_BENCH_FLOOD_SECONDS", "4"))
AGENT_CPU = "0"
PATHS = ("same node", "across nodes")


def _hubble(lab: str, node: str) -> dict:
    status = json.loads(membrane(lab, "status", "--node", node, "-o", "json"))
    return status.get("hubble", {})


def run(runs: int) -> list[Measurement]:
    name = "flow events (2 nodes)"
    rows: dict[tuple[str, str], Measurement] = {}
    for metric, unit in (("TCP 1 stream", "Gbit/s"), ("TCP_RR", "req/s"), ("TCP_CRR", "conn/s")):
        for path in PATHS:
            rows[(metric, path)] = Measurement(name, f"{metric} {path}, events on", unit, [],
                                               baseline_name="same path, events off")
    ingest = Measurement(name, "flows/s ingested by one agent on one core", "flows/s", [],
                         baseline_name="events/s the datapath produced")
    lost = Measurement(name, "events/s the full ring buffer dropped", "events/s", [], higher_is_better=False)
    per_cpu = Measurement(name, "flows per agent CPU-second (all its threads) during the flood", "flows/s/core", [])
    workdir = tempfile.mkdtemp(prefix="membrane-bench-")
    try:
        rr = build_rr(workdir)
        with bench_lab(2) as lab:
            membrane(lab, "apply", "-f", "-", input=PODS)
            pods = wait_pods(lab, ["bench-srv", "bench-cli-local", "bench-cli-remote"])
            paths = LabPaths(lab)
            ip = {n: p["status"]["podIP"] for n, p in pods.items()}
            netns = {n: paths.pod_netns("default", n) for n in ip}
            server_node = pods["bench-srv"]["spec"]["nodeName"]
            pins = [paths.bpffs_dir(n.name) for n in load_record(lab).topology.nodes]  # type: ignore[union-attr]
            clients = {"same node": netns["bench-cli-local"], "across nodes": netns["bench-cli-remote"]}
            servers = Servers(netns["bench-srv"], rr)
            try:
                wait_listening(netns["bench-srv"])
                for i in range(runs):
                    for path in PATHS:
                        samples = {}
                        for on in ((True, False) if i % 2 == 0 else (False, True)):
                            for pin in pins:
                                set_events_enabled(pin, on)
                            samples[on] = measure(clients[path], ip["bench-srv"], rr)
                        for metric, attr in (("TCP 1 stream", "gbits"), ("TCP_RR", "rr"), ("TCP_CRR", "crr")):
                            rows[(metric, path)].subject.append(getattr(samples[True], attr))
                            rows[(metric, path)].baseline.append(getattr(samples[False], attr))
                        print(f"  run {i + 1} {path:12}: CRR events on {samples[True].crr:,.0f}/s, "
                              f"off {samples[False].crr:,.0f}/s", flush=True)
                    for pin in pins:
                        set_events_enabled(pin, True)
                    flows, produced, dropped, cpu_rate = _flood(lab, server_node, clients["same node"],
                                                                ip["bench-srv"], rr)
                    ingest.subject.append(flows)
                    ingest.baseline.append(produced)
                    lost.subject.append(dropped)
                    per_cpu.subject.append(cpu_rate)
                    print(f"  run {i + 1} flood: {flows:,.0f} flows/s ingested of {produced:,.0f} events/s "
                          f"produced, {dropped:,.0f}/s dropped; {cpu_rate:,.0f} flows per agent CPU-second",
                          flush=True)
            finally:
                servers.close()
                for pin in pins:
                    if os.path.isdir(pin):
                        set_events_enabled(pin, True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    note = (f"traffic pinned to one CPU, the server node's agent to cpu {AGENT_CPU} during the {FLOOD_SECONDS:.0f} s "
            "CRR flood; ratios on/off per row (ingest: flows delivered / events produced)")
    for m in [*rows.values(), ingest, lost, per_cpu]:
        m.notes = note
    return [*rows.values(), ingest, lost, per_cpu]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def _flood(lab: str, node: str, client_ns: str, server_ip: str, rr: str) -> tuple[float, float, float, float]:
    agent = daemon_state(lab, f"agent-{node}")  # the agent itself, not its supervisor (lab.json's PID)
    assert agent is not None and agent.pid, f"agent-{node} is not running"
    subprocess.run(["taskset", "-a", "-pc", AGENT_CPU, str(agent.pid)], check=True, capture_output=True)
    before = _hubble(lab, node).get("events", {})
    cpu_before = _cpu_seconds(agent.pid)
    start = time.monotonic()
    subprocess.run(in_ns(client_ns, rr, "crr", server_ip, str(RR_PORT), str(FLOOD_SECONDS)),
                   check=True, capture_output=True, timeout=FLOOD_SECONDS + 30)
    time.sleep(1.0)  # let the agent drain what is queued
    elapsed = time.monotonic() - start
    cpu = _cpu_seconds(agent.pid) - cpu_before
    after = _hubble(lab, node).get("events", {})
    delivered = after.get("delivered", 0) - before.get("delivered", 0)
    dropped = after.get("lost", 0) - before.get("lost", 0)
    produced = after.get("emitted", 0) - before.get("emitted", 0) + dropped  # written + refused
    return delivered / elapsed, produced / elapsed, dropped / elapsed, delivered / cpu if cpu > 0 else 0.0
