"""Pod-to-pod datapath: TCP throughput, TCP_RR and TCP_CRR through Membrane's eBPF datapath.

Ours: a 2-node lab with a server pod on k8s-w1, one client pod on the same node and one on
k8s-ctr; a CiliumNetworkPolicy allows the clients into the server, so the server's ingress policy
is enforced. Each path is measured with the server endpoint's policy map holding only the real
allow entries and again with 10 000 extra entries (distinct identities) bulk-inserted through the
datapath API. Baseline, in the same run and interleaved: two scratch namespaces joined by a bare
veth pair — no BPF, no routing — the limit of any veth-based CNI. Every client and server runs
pinned to one vCPU (``taskset -c 1``), see /work/shared/reference/benchmarking.md.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bench.harness import Measurement
from membrane.datapath.maps.endpoints import POLICY_INGRESS_ENFORCED, EndpointRecord, EndpointsMap
from membrane.datapath.maps.ipcache import IpcacheMap
from membrane.datapath.maps.policy import DIR_INGRESS, PolicyMap, PolicyRule
from membrane.model.naming import LabPaths
from membrane.store.etcd import EtcdClient
from membrane.store.resources import ResourceStore

MEMBRANE = os.path.join(os.path.dirname(sys.executable), "membrane")
RR_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rr.c")
CPU = os.environ.get("MEMBRANE_BENCH_CPU", "1")
IPERF_PORT, RR_PORT = 5201, 7001
IPERF_SECONDS, RR_SECONDS = 3, 1.5
FILLERS = int(os.environ.get("MEMBRANE_BENCH_POLICY_ENTRIES", "10000"))
FILLER_IDENTITY_BASE = 2_000_000  # above the cluster identity range, below the local (CIDR) scope
SERVER_NODE, REMOTE_NODE = "k8s-w1", "k8s-ctr"
BARE_A, BARE_B = "192.0.2.1", "192.0.2.2"  # TEST-NET-1, only inside the scratch namespaces

PODS = f"""apiVersion: v1
kind: Pod
metadata: {{name: bench-srv, labels: {{app: bench-srv}}}}
spec: {{nodeName: {SERVER_NODE}, containers: [{{name: c, image: busybox}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: bench-cli-local, labels: {{app: bench-cli}}}}
spec: {{nodeName: {SERVER_NODE}, containers: [{{name: c, image: busybox}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: bench-cli-remote, labels: {{app: bench-cli}}}}
spec: {{nodeName: {REMOTE_NODE}, containers: [{{name: c, image: busybox}}]}}
"""

ALLOW_CLIENTS = f"""apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: bench-allow-clients}}
spec:
  endpointSelector: {{matchLabels: {{app: bench-srv}}}}
  ingress:
    - fromEndpoints: [{{matchLabels: {{app: bench-cli}}}}]
      toPorts: [{{ports: [{{port: "{IPERF_PORT}", protocol: TCP}}, {{port: "{RR_PORT}", protocol: TCP}}]}}]
"""


# ---- labs -------------------------------------------------------------------------------------


def membrane(lab: str, *args: str, input: str | None = None, timeout: float = 300) -> str:
    proc = subprocess.run([MEMBRANE, "--lab", lab, *args], input=input, text=True, capture_output=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"membrane --lab {lab} {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


@contextmanager
def bench_lab(nodes: int) -> Iterator[str]:
    """A fresh lab with a unique name, always deleted afterwards."""
    lab = f"bench{secrets.token_hex(3)}"
    try:
        membrane(lab, "lab", "create", "--nodes", str(nodes), timeout=300)
        yield lab
    finally:
        subprocess.run([MEMBRANE, "--lab", lab, "lab", "delete"], capture_output=True, timeout=300)


def _ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in pod.get("status", {}).get("conditions", []) or [])


def wait_pods(lab: str, names: list[str] | None = None, count: int = 0, timeout: float = 180) -> dict[str, dict]:
    """Poll the store in-process (a CLI per poll would steal CPU) until the pods are Ready."""
    store = ResourceStore(EtcdClient(LabPaths(lab).etcd_endpoint), "default")
    deadline = time.monotonic() + timeout
    while True:
        pods = {p["metadata"]["name"]: p for p in store.list("core", "Pod", "default")[0]}
        ready = {n: p for n, p in pods.items() if _ready(p) and p.get("status", {}).get("podIP")}
        if (names and all(n in ready for n in names)) or (count and len(ready) >= count):
            return ready
        if time.monotonic() > deadline:
            raise RuntimeError(f"pods not Ready after {timeout:.0f} s ({len(ready)}/{len(names or []) or count})")
        time.sleep(0.3)


def wait_until(fn: Callable[[], object], timeout: float, interval: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


# ---- processes --------------------------------------------------------------------------------


def build_rr(workdir: str) -> str:
    binary = os.path.join(workdir, "rr")
    subprocess.run(["gcc", "-O2", "-Wall", "-o", binary, RR_SOURCE], check=True, capture_output=True)
    return binary


def in_ns(netns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", netns, "taskset", "-c", CPU, *cmd]


class Servers:
    """iperf3 and rr servers in one namespace; stopped (by their own pids) on close."""

    def __init__(self, netns: str, rr: str) -> None:
        self.procs = [subprocess.Popen(in_ns(netns, "iperf3", "-s", "-p", str(IPERF_PORT)),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                      subprocess.Popen(in_ns(netns, rr, "server", str(RR_PORT)),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_listening(netns: str, ports: tuple[int, ...] = (IPERF_PORT, RR_PORT), timeout: float = 10) -> None:
    def up() -> bool:
        out = subprocess.run(["ip", "netns", "exec", netns, "ss", "-Hltn"], capture_output=True, text=True).stdout
        return all(f":{p} " in out for p in ports)

    if not wait_until(up, timeout):
        raise RuntimeError(f"servers in {netns} not listening on {ports}")


@dataclass
class Sample:
    gbits: float
    rr: float
    crr: float


def measure(client_ns: str, server_ip: str, rr: str) -> Sample:
    out = subprocess.run(in_ns(client_ns, "iperf3", "-c", server_ip, "-p", str(IPERF_PORT), "-t", str(IPERF_SECONDS),
                               "-J"), capture_output=True, text=True, timeout=IPERF_SECONDS + 30)
    if out.returncode != 0:
        raise RuntimeError(f"iperf3 {client_ns} -> {server_ip}: {out.stdout[-400:]} {out.stderr[-400:]}")
    gbits = json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9
    rates = []
    for mode in ("rr", "crr"):
        res = subprocess.run(in_ns(client_ns, rr, mode, server_ip, str(RR_PORT), str(RR_SECONDS)),
                             capture_output=True, text=True, timeout=RR_SECONDS + 30)
        if res.returncode != 0:
            raise RuntimeError(f"{mode} {client_ns} -> {server_ip}: {res.stderr.strip()}")
        count, seconds = res.stdout.split()
        rates.append(int(count) / float(seconds))
    return Sample(gbits, rates[0], rates[1])


@contextmanager
def bare_veth(prefix: str) -> Iterator[tuple[str, str]]:
    """Two scratch namespaces (named under the lab prefix, so ``lab delete`` would also find them)."""
    a, b = f"{prefix}bare-a", f"{prefix}bare-b"
    try:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True, capture_output=True)
        subprocess.run(["ip", "-n", a, "link", "add", "veth0", "type", "veth", "peer", "name", "veth0", "netns", b],
                       check=True, capture_output=True)
        for ns, ip in ((a, BARE_A), (b, BARE_B)):
            subprocess.run(["ip", "-n", ns, "addr", "add", f"{ip}/30", "dev", "veth0"], check=True, capture_output=True)
            subprocess.run(["ip", "-n", ns, "link", "set", "veth0", "up"], check=True, capture_output=True)
        yield a, b
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


# ---- policy state -----------------------------------------------------------------------------


class ServerPolicy:
    """The server endpoint's ingress policy as the datapath sees it, and the filler entries."""

    def __init__(self, lab: str, server_ip: str, client_ips: list[str]) -> None:
        self.pin_dir = LabPaths(lab).bpffs_dir(SERVER_NODE)
        self.server_ip = server_ip
        self.client_ips = client_ips
        self.by_bench: list[str] = []
        with EndpointsMap.open(self.pin_dir) as eps:
            record = eps.get(server_ip)
        if record is None:
            raise RuntimeError(f"server {server_ip} not in the endpoints map of {SERVER_NODE}")
        self.ep_id = record.ep_id

    def _client_identities(self) -> set[int]:
        with IpcacheMap.open(self.pin_dir) as ipc:
            return {ipc.identity_of(ip) for ip in self.client_ips}

    def _allow_rules(self) -> list[PolicyRule]:
        return [PolicyRule(self.ep_id, DIR_INGRESS, identity=ident, protocol=6, port=port)
                for ident in sorted(self._client_identities()) for port in (IPERF_PORT, RR_PORT)]

    def _enforced(self) -> bool:
        with EndpointsMap.open(self.pin_dir) as eps:
            record = eps.get(self.server_ip)
        return bool(record and record.flags & POLICY_INGRESS_ENFORCED)

    def _allowed(self) -> bool:
        with PolicyMap.open(self.pin_dir) as pm:
            have = set(pm.items())
        return all(slot in have for rule in self._allow_rules() for slot in rule.slots())

    def ensure_enforced(self, wait: float) -> None:
        """Give the agent ``wait`` seconds to enforce the applied policy; do what it has not."""
        if wait_until(lambda: self._enforced() and self._allowed(), wait):
            return
        if not self._allowed():
            self.by_bench.append("allow entries")
            with PolicyMap.open(self.pin_dir) as pm:
                for rule in self._allow_rules():
                    pm.update(rule)
        if not self._enforced():
            self.by_bench.append("ingress enforcement flag")
            with EndpointsMap.open(self.pin_dir) as eps:
                rec = eps.get(self.server_ip)
                assert rec is not None
                eps.update(self.server_ip, EndpointRecord(rec.ifindex, rec.ep_id, rec.pod_mac, rec.lxc_mac,
                                                          rec.flags | POLICY_INGRESS_ENFORCED, rec.sec_identity))

    def allow_hits(self) -> int:
        """New connections the allow entries decided: proof that policy was evaluated."""
        wanted = {slot for rule in self._allow_rules() for slot in rule.slots()}
        with PolicyMap.open(self.pin_dir) as pm:
            return sum(state.packets for slot, state in pm.items().items() if slot in wanted)

    def _fillers(self) -> list[PolicyRule]:
        return [PolicyRule(self.ep_id, DIR_INGRESS, identity=FILLER_IDENTITY_BASE + i, protocol=6,
                           port=(IPERF_PORT, RR_PORT)[i % 2]) for i in range(FILLERS)]

    def add_fillers(self) -> None:
        with PolicyMap.open(self.pin_dir) as pm:
            for rule in self._fillers():
                pm.update(rule)

    def remove_fillers(self) -> None:
        with PolicyMap.open(self.pin_dir) as pm:
            for rule in self._fillers():
                pm.delete(rule)

    def entries(self) -> int:
        with PolicyMap.open(self.pin_dir) as pm:
            return sum(1 for slot in pm.items() if slot.ep_id == self.ep_id and slot.direction == DIR_INGRESS)



# ---- the benchmark ----------------------------------------------------------------------------

PATHS = ("same node", "across nodes")


def run(runs: int) -> list[Measurement]:
    name = "datapath pod→pod (2 nodes, cpu-pinned)"
    base = "bare veth pair, 2 netns"
    rows: dict[tuple[str, str, int], Measurement] = {}
    for metric, unit in (("TCP 1 stream", "Gbit/s"), ("TCP_RR", "req/s"), ("TCP_CRR", "conn/s")):
        for path in PATHS:
            for extra in (0, FILLERS):
                rows[(metric, path, extra)] = Measurement(name, f"{metric} {path}, +{extra} policy entries", unit, [],
                                                          baseline_name=base)
    workdir = tempfile.mkdtemp(prefix="membrane-bench-")
    try:
        rr = build_rr(workdir)
        with bench_lab(2) as lab:
            membrane(lab, "apply", "-f", "-", input=PODS)
            pods = wait_pods(lab, ["bench-srv", "bench-cli-local", "bench-cli-remote"])
            ip = {n: p["status"]["podIP"] for n, p in pods.items()}
            paths = LabPaths(lab)
            netns = {n: paths.pod_netns("default", n) for n in ip}
            membrane(lab, "apply", "-f", "-", input=ALLOW_CLIENTS)
            policy = ServerPolicy(lab, ip["bench-srv"], [ip["bench-cli-local"], ip["bench-cli-remote"]])
            policy.ensure_enforced(wait=15)
            clients = {"same node": netns["bench-cli-local"], "across nodes": netns["bench-cli-remote"]}
            with bare_veth(paths.netns_prefix) as (bare_a, bare_b):
                servers = [Servers(netns["bench-srv"], rr), Servers(bare_b, rr)]
                try:
                    wait_listening(netns["bench-srv"])
                    wait_listening(bare_b)
                    notes = _runs(runs, rows, policy, clients, ip["bench-srv"], bare_a, rr)
                finally:
                    for s in servers:
                        s.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for m in rows.values():
        m.notes = notes
    return list(rows.values())


def _runs(runs: int, rows: dict[tuple[str, str, int], Measurement], policy: ServerPolicy,
          clients: dict[str, str], server_ip: str, bare_ns: str, rr: str) -> str:
    hits_before = policy.allow_hits()
    lost_fillers = 0
    for i in range(runs):
        # Alternate which policy state comes first, so drift over a run does not favour one; every
        # sample is paired with a bare-veth sample taken right before it (A B A B ...).
        for extra in ((0, FILLERS) if i % 2 == 0 else (FILLERS, 0)):
            if extra:
                policy.add_fillers()
            for path in PATHS:
                bare = measure(bare_ns, BARE_B, rr)
                ours = measure(clients[path], server_ip, rr)
                for metric, value, b in (("TCP 1 stream", ours.gbits, bare.gbits), ("TCP_RR", ours.rr, bare.rr),
                                         ("TCP_CRR", ours.crr, bare.crr)):
                    rows[(metric, path, extra)].subject.append(value)
                    rows[(metric, path, extra)].baseline.append(b)
                print(f"  run {i + 1} {path:12} +{extra:<5} entries: {ours.gbits:.2f} Gbit/s, {ours.rr:,.0f} RR/s, "
                      f"{ours.crr:,.0f} CRR/s (bare: {bare.gbits:.2f}, {bare.rr:,.0f}, {bare.crr:,.0f})", flush=True)
            if extra:
                if policy.entries() < FILLERS:
                    lost_fillers += 1
                policy.remove_fillers()
    hits = policy.allow_hits() - hits_before
    notes = (f"all processes pinned to cpu {CPU}; iperf3 {IPERF_SECONDS} s, RR/CRR {RR_SECONDS} s each (bench/rr.c); "
             f"server ingress policy enforced ({hits} new connections decided by its allow entries)")
    if policy.by_bench:
        notes += f"; set by the benchmark, not the agent: {', '.join(policy.by_bench)}"
    if lost_fillers:
        notes += f"; WARNING: the filler entries were partly removed (by an agent resync?) in {lost_fillers} run(s)"
    if hits == 0:
        print("  WARNING: the allow entries decided no connection: policy was not enforced", flush=True)
    return notes
