"""Policy update latency: ``membrane apply`` of one CiliumNetworkPolicy until the kernel enforces it.

Ours: a 3-node lab with N = 1 000 pods (100 Deployments of 10 replicas, labels ``group=g0..g99``) and
M = 10 000 background CiliumNetworkPolicies (each lets one group into the next on its own TCP port, so
every endpoint is selected by 100 of them; applied in batches of 100 before measuring), plus a probe server pod whose ingress is already enforced and a
probe client pod on another node that it denies. Each repetition starts a probe in the client that
opens a fresh connection to a new port every 10 ms (each one a new first packet, so a new policy
verdict), runs ``membrane apply`` of one policy allowing that port, and times from just before the
CLI starts until the first connection is accepted — CLI, etcd, watches, the agents' policy
computation and the BPF map writes all included. The CPU time the agents spent (sum over all
agents, ``/proc/<pid>/stat`` utime+stime, until they are idle again) is the second metric.

Baseline, in the same run right before: ``iptables-restore`` of a filter table holding M + 1 rules
into a scratch netns — what an iptables-based CNI does to add one rule to M (wall time, and the CPU
time of that process).
"""

from __future__ import annotations

import json
import os
import resource
import select
import shutil
import subprocess
import sys
import tempfile
import time

from bench.harness import Measurement
from bench.netbench import bench_lab, build_rr, membrane, wait_pods
from membrane.datapath.maps.policy import PolicyMap
from membrane.lab.paths import LabPaths

PODS = int(os.environ.get("MEMBRANE_BENCH_POLICY_PODS", "1000"))
POLICIES = int(os.environ.get("MEMBRANE_BENCH_POLICIES", "10000"))
GROUPS = int(os.environ.get("MEMBRANE_BENCH_POLICY_GROUPS", "100"))
# 1 000 pods on 3 nodes: ~334 per node, above the default maxPods (110) and a /24 pod CIDR.
LAB_SETTINGS = ("maxPods=400", "clusterPoolIPv4MaskSize=22")
BATCH = 100  # policies per `membrane apply` (one etcd transaction each)
NODES = ("k8s-ctr", "k8s-w1", "k8s-w2")
SERVER_NODE, CLIENT_NODE = "k8s-w1", "k8s-ctr"
PROBE_PORT_BASE = 7100
PROBE_TIMEOUT = 60.0
TICK = os.sysconf("SC_CLK_TCK")

PROBE = """
import select, socket, sys, time
host, port, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
pending = []
print("ready", flush=True)
while time.monotonic() < deadline:
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex((host, port))
    pending.append(s)
    _, done, _ = select.select([], pending, [], 0.01)
    for d in done:
        if d.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            print(f"{time.monotonic():.6f}", flush=True)
            sys.exit(0)
        pending.remove(d)
        d.close()
    while len(pending) > 200:
        pending.pop(0).close()
sys.exit(1)
"""


def _population() -> str:
    docs = []
    for g in range(GROUPS):
        replicas = PODS // GROUPS + (1 if g < PODS % GROUPS else 0)
        docs.append(f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: pop-g{g}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{group: g{g}}}}}
  template:
    metadata: {{labels: {{app: pop, group: g{g}}}}}
    spec: {{containers: [{{name: c, image: busybox}}]}}""")
    for name, node in (("probe-srv", SERVER_NODE), ("probe-cli", CLIENT_NODE)):
        docs.append(f"""apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec: {{nodeName: {node}, containers: [{{name: c, image: busybox}}]}}""")
    # The probe server enforces ingress from the start and admits nobody real.
    docs.append(_cnp("probe-base", "app: probe-srv", "app: nobody", PROBE_PORT_BASE - 1))
    return "\n---\n".join(docs) + "\n"


def _cnp(name: str, selects: str, allows: str, port: int) -> str:
    return f"""apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: {name}}}
spec:
  endpointSelector: {{matchLabels: {{{selects}}}}}
  ingress:
    - fromEndpoints: [{{matchLabels: {{{allows}}}}}]
      toPorts: [{{ports: [{{port: "{port}", protocol: TCP}}]}}]"""


def _background(first: int, count: int) -> str:
    return "\n---\n".join(_cnp(f"bg-{i}", f"group: g{i % GROUPS}", f"group: g{(i + 1) % GROUPS}", 10000 + i)
                          for i in range(first, first + count)) + "\n"


def _agent_pids(lab: str) -> list[int]:
    with open(LabPaths(lab).state_file) as fh:
        procs = json.load(fh)["processes"]
    return [rec["pid"] for name, rec in procs.items() if name.startswith("agent-")]


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / TICK


def _settle(pids: list[int], quiet: float = 1.0, timeout: float = 120) -> float:
    """Wait until the agents spend (almost) no CPU for ``quiet`` seconds; their CPU time then."""
    deadline = time.monotonic() + timeout
    last = _cpu_seconds(pids)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = _cpu_seconds(pids)
        if now - last <= max(2 / TICK, 0.03 * quiet):  # idle: under 3% of a CPU (controllers tick)
            return now
        last = now
    return last


def _policy_entries(lab: str) -> int:
    total = 0
    for node in NODES:
        with PolicyMap.open(LabPaths(lab).bpffs_dir(node)) as pm:
            total += len(pm.items())
    return total


def _iptables_rules(count: int) -> str:
    lines = ["*filter", ":MB-POLICY - [0:0]", "-A FORWARD -j MB-POLICY"]
    for i in range(count):
        src, dst = f"10.1.{i // 250 % 250}.{i % 250 + 1}", f"10.2.{i // 2500 % 250}.{i % 250 + 1}"
        lines.append(f"-A MB-POLICY -s {src}/32 -d {dst}/32 -p tcp -m tcp --dport {10000 + i % 50000} -j ACCEPT")
    lines += ["-A MB-POLICY -j DROP", "COMMIT", ""]
    return "\n".join(lines)


def _baseline(scratch: str, rules: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ``iptables-restore`` into the scratch netns."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    subprocess.run(["ip", "netns", "exec", scratch, "iptables-restore"], input=rules, text=True, check=True,
                   capture_output=True, timeout=120)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _ours(lab: str, rep: int, server_ip: str, netns: dict[str, str], rr: str, agents: list[int]) -> tuple[float, float]:
    """(seconds from apply to enforcement, agent CPU seconds) for one new policy."""
    port = PROBE_PORT_BASE + rep
    server = subprocess.Popen(["ip", "netns", "exec", netns["probe-srv"], rr, "server", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    probe = None
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "listening"
        # Settle before the probe starts: its denied SYNs make drop events the agents decode, so they
        # would never look idle while it runs.
        _settle(agents, quiet=0.5)
        probe = subprocess.Popen(["ip", "netns", "exec", netns["probe-cli"], sys.executable, "-c", PROBE, server_ip,
                                  str(port), str(PROBE_TIMEOUT)], stdout=subprocess.PIPE, text=True)
        assert probe.stdout is not None
        probe.stdout.readline()  # "ready"
        if select.select([probe.stdout], [], [], 0.5)[0]:
            raise RuntimeError(f"probe reached port {port} before the policy was applied: ingress not enforced")
        cpu0 = _cpu_seconds(agents)
        t0 = time.monotonic()
        membrane(lab, "apply", "-f", "-", input=_cnp(f"probe-allow-{rep}", "app: probe-srv", "app: probe-cli", port))
        line = probe.stdout.readline().strip()
        if not line:
            raise RuntimeError(f"the policy for port {port} was not enforced within {PROBE_TIMEOUT:.0f} s")
        latency = float(line) - t0
        return latency, _settle(agents) - cpu0
    finally:
        for proc in (probe, server):
            if proc is not None:
                proc.kill()
                proc.wait()


def run(runs: int) -> list[Measurement]:
    name = f"policy apply→enforced ({PODS} pods, {POLICIES} policies, 3 nodes)"
    base = "iptables-restore (nft), same rule count"
    latency = Measurement(name, "apply → first allowed connection", "ms", [], baseline_name=base,
                          higher_is_better=False)
    cpu = Measurement(name, "agent CPU per apply (all agents)", "ms", [], baseline_name=base, higher_is_better=False)
    workdir = tempfile.mkdtemp(prefix="membrane-bench-")
    try:
        rr = build_rr(workdir)
        with bench_lab(len(NODES), *LAB_SETTINGS) as lab:
            t_setup = time.monotonic()
            membrane(lab, "apply", "-f", "-", input=_population())
            pods = wait_pods(lab, count=PODS + 2, timeout=600)
            print(f"  setup: {len(pods)} pods Ready after {time.monotonic() - t_setup:.0f} s", flush=True)
            for first in range(0, POLICIES, BATCH):
                membrane(lab, "apply", "-f", "-", input=_background(first, min(BATCH, POLICIES - first)))
            print(f"  setup: {POLICIES} policies applied after {time.monotonic() - t_setup:.0f} s", flush=True)
            agents = _agent_pids(lab)
            _settle(agents, timeout=300)
            entries = _policy_entries(lab)
            setup = time.monotonic() - t_setup
            print(f"  setup: {len(pods)} pods, {POLICIES} policies, {entries} BPF policy entries in "
                  f"{setup:.0f} s", flush=True)
            paths = LabPaths(lab)
            netns = {n: paths.pod_netns("default", n) for n in ("probe-srv", "probe-cli")}
            scratch = f"{paths.netns_prefix}ipt-scratch"  # under the lab prefix: lab delete removes it too
            subprocess.run(["ip", "netns", "add", scratch], check=True, capture_output=True)
            try:
                for rep in range(runs):
                    rules = _iptables_rules(POLICIES + 1)
                    b_wall, b_cpu = _baseline(scratch, rules)
                    o_lat, o_cpu = _ours(lab, rep, pods["probe-srv"]["status"]["podIP"], netns, rr, agents)
                    print(f"  run {rep + 1}: apply→enforced {o_lat * 1e3:.0f} ms, agents CPU {o_cpu * 1e3:.0f} ms; "
                          f"iptables-restore of {POLICIES + 1} rules {b_wall * 1e3:.0f} ms "
                          f"(CPU {b_cpu * 1e3:.0f} ms)", flush=True)
                    latency.subject.append(o_lat * 1e3)
                    latency.baseline.append(b_wall * 1e3)
                    cpu.subject.append(o_cpu * 1e3)
                    cpu.baseline.append(b_cpu * 1e3)
            finally:
                subprocess.run(["ip", "netns", "del", scratch], capture_output=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    note = (f"{PODS} pods in {GROUPS} groups + probe pods, {POLICIES} background CNPs applied in batches of {BATCH}, "
            f"{entries} BPF policy entries over {len(NODES)} nodes; latency includes the membrane CLI; probe = a new "
            f"TCP connection every 10 ms; iptables baseline restores {POLICIES + 1} rules; setup took {setup:.0f} s")
    latency.notes = cpu.notes = note
    return [latency, cpu]
