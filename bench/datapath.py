"""Pod-to-pod datapath: TCP throughput, TCP_RR and TCP_CRR, Membrane's eBPF datapath against the bare kernel.

Every sample is paired with one of the **kernel baseline** taken in the same run, right before or after it:
scratch namespaces with the lab's exact shape (two nodes on an underlay bridge, pods on veths with a /32 and
a default route via the node) and plain kernel routing, no BPF anywhere (bench/kernelnet.py). Against it:

* **iptables, 10k FORWARD rules**: the same scratch shape with 10 000 filter rules every forwarded packet walks
  (the contrast: how iptables-based CNIs and kube-proxy grow);
* **Membrane, no policy**: a 2-node lab, server pod ``bench-open`` that no policy selects;
* **Membrane, policy + 10k**: server pod ``bench-srv`` whose ingress is enforced by a CiliumNetworkPolicy,
  with 10 000 extra entries of distinct identities in its policy map (bulk-inserted through the datapath API)
  and 10 000 extra identities (/32s) published in the cluster store's ipcache, which both agents keep in
  their ipcache maps;
* **Membrane via ClusterIP, 10k services**: the same clients to ``bench-srv`` through its Service's ClusterIP
  while both nodes' LB maps also hold 10 000 other services × 5 backends (policy fillers still in place).

Paths: ``same node`` (client and server on k8s-w1) and ``across nodes`` (client on k8s-ctr). Every client and
server runs pinned to one vCPU (``taskset -c 1``), see /work/shared/reference/benchmarking.md.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

from bench.harness import Measurement
from bench.kernelnet import (
    RoutedPair,
    forward_rule_count,
    iptables_forward_rules,
    kube_proxy_ruleset,
    load_kube_proxy,
    nat_rule_count,
    routed_pair,
)
from bench.netbench import (
    CPU,
    IPERF_PORT,
    RR_PORT,
    Sample,
    Servers,
    bench_lab,
    build_rr,
    measure,
    membrane,
    wait_listening,
    wait_pods,
    wait_until,
)
from bench.tunnel_pairing import (
    TUNNEL_BASELINE,
    TunnelRows,
    kernel_tunnel_pair,
    kernel_tunnel_wanted,
    routing_label,
)
from membrane.datapath.maps.endpoints import POLICY_INGRESS_ENFORCED, EndpointRecord, EndpointsMap
from membrane.datapath.maps.ipcache import IpcacheMap
from membrane.datapath.maps.lb import Backend, Frontend, LBMaps
from membrane.datapath.maps.policy import DIR_INGRESS, PolicyMap, PolicyRule
from membrane.ipcache.cache import IPCacheEntry, Source
from membrane.lab.paths import LabPaths
from membrane.store.etcd import EtcdClient
from membrane.store.layout import StoreLayout
from membrane.store.txn import Op

FILLERS = int(os.environ.get("MEMBRANE_BENCH_POLICY_ENTRIES", "10000"))
IPTABLES_RULES = int(os.environ.get("MEMBRANE_BENCH_IPTABLES_RULES", "10000"))
EXTRA_SERVICES = int(os.environ.get("MEMBRANE_BENCH_EXTRA_SERVICES", "10000"))
# Helm values for the lab, e.g. MEMBRANE_BENCH_SET="bpf.hostLegacyRouting=true" to measure without host routing.
LAB_SETTINGS = os.environ.get("MEMBRANE_BENCH_SET", "").split()
BACKENDS_EACH = 5  # 10 000 × (5 + 1) svc slots fit Cilium's default 65 536-entry LB map
EXTRA_ID_BASE = 40_000  # rev-NAT and backend ids far above what the agent hands out
FILLER_IDENTITY_BASE = 2_000_000  # above the cluster identity range, below the local (CIDR) scope
IPERF_SECONDS, RR_SECONDS = 2.0, 1.0
SERVER_NODE, REMOTE_NODE = "k8s-w1", "k8s-ctr"
PATHS = ("same node", "across nodes")
METRICS = (("TCP 1 stream", "Gbit/s", "gbits"), ("TCP_RR", "req/s", "rr"), ("TCP_CRR", "conn/s", "crr"))


ROUTING = routing_label(LAB_SETTINGS)
KERNEL_TUNNEL = kernel_tunnel_wanted(LAB_SETTINGS)  # also pair across-node rows with a kernel VXLAN tunnel
VARIANTS = {
    "iptables": f"iptables, {IPTABLES_RULES // 1000}k FORWARD rules",
    "open": f"Membrane, no policy{ROUTING}",
    "policy": f"Membrane, policy + {FILLERS // 1000}k entries/identities{ROUTING}",
    "service": f"Membrane via ClusterIP, {EXTRA_SERVICES // 1000}k services{ROUTING}",
    "kubeproxy": f"kube-proxy iptables via ClusterIP, {EXTRA_SERVICES // 1000}k services",
}
KUBE_PROXY_VIP = "10.96.200.1"  # outside the range bench.kubeproxy_rules gives its 10 000 Services
BASELINE = "kernel routing, no BPF"


def _pod(name: str, app: str, node: str) -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {app}}}}}\n"
            f"spec: {{nodeName: {node}, containers: [{{name: c, image: busybox}}]}}\n")


PODS = "---\n".join([_pod("bench-srv", "bench-srv", SERVER_NODE), _pod("bench-open", "bench-open", SERVER_NODE),
                     _pod("bench-cli-local", "bench-cli", SERVER_NODE),
                     _pod("bench-cli-remote", "bench-cli", REMOTE_NODE)])

ALLOW_CLIENTS = f"""apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: bench-allow-clients}}
spec:
  endpointSelector: {{matchLabels: {{app: bench-srv}}}}
  ingress:
    - fromEndpoints: [{{matchLabels: {{app: bench-cli}}}}]
      toPorts: [{{ports: [{{port: "{IPERF_PORT}", protocol: TCP}}, {{port: "{RR_PORT}", protocol: TCP}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: bench-srv}}
spec:
  selector: {{app: bench-srv}}
  ports: [{{name: iperf, port: {IPERF_PORT}}}, {{name: rr, port: {RR_PORT}}}]
"""


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

    def entries(self) -> int:
        with PolicyMap.open(self.pin_dir) as pm:
            return sum(1 for slot in pm.items() if slot.ep_id == self.ep_id and slot.direction == DIR_INGRESS)


def _filler_prefix(i: int) -> str:
    return f"10.250.{i >> 8 & 255}.{i & 255}/32"


def publish_identity_fillers(lab: str, pin_dirs: list[str], timeout: float = 60) -> None:
    """10 000 extra identities, one /32 each (10.250.0.0/16), published in the cluster store's ipcache as
    remote endpoints are, so every agent keeps them in its node's ipcache map (the LPM trie every packet
    consults); waits until all nodes have them."""
    client = EtcdClient(LabPaths(lab).etcd_endpoint)
    layout = StoreLayout("default")
    ops = [Op.put(layout.ipcache_key(_filler_prefix(i)),
                  json.dumps(IPCacheEntry.of(_filler_prefix(i), FILLER_IDENTITY_BASE + i, Source.KVSTORE,
                                             node="bench-fillers").to_dict(), sort_keys=True))
           for i in range(FILLERS)]
    for first in range(0, len(ops), 100):  # etcd's default limit is 128 operations per transaction
        client.txn([], ops[first:first + 100])
    if not wait_until(lambda: all(identity_fillers_left([pin]) >= FILLERS for pin in pin_dirs), timeout, 0.5):
        raise RuntimeError(f"the agents did not write the {FILLERS} published identities into their ipcache "
                           f"within {timeout:.0f} s")


def identity_fillers_left(pin_dirs: list[str]) -> int:
    """Filler identities in the first node's ipcache map."""
    with IpcacheMap.open(pin_dirs[0]) as ipc:
        return sum(1 for _, entry in ipc.items() if entry.identity >= FILLER_IDENTITY_BASE)


def load_services(pin_dir: str) -> None:
    """EXTRA_SERVICES ClusterIP services × BACKENDS_EACH backends, ids far above the agent's."""
    backend = EXTRA_ID_BASE * 10
    with LBMaps.open(pin_dir) as lb:
        for i in range(EXTRA_SERVICES):
            backends = []
            for _ in range(BACKENDS_EACH):
                backend += 1
                backends.append(Backend(backend, f"10.201.{backend >> 8 & 255}.{backend & 255}", 8080))
            lb.upsert_service(Frontend(f"10.97.{i >> 8 & 255}.{i & 255}", 80), backends,
                              rev_nat_index=EXTRA_ID_BASE + i)


def services_left(pin_dir: str) -> int:
    with LBMaps.open(pin_dir) as lb:
        return sum(1 for r in lb.services() if r.rev_nat_index >= EXTRA_ID_BASE)


# ---- the benchmark ----------------------------------------------------------------------------


class Rows:
    """One Measurement per (variant, metric, path), each sample paired with a kernel sample of its run."""

    def __init__(self) -> None:
        name = "datapath pod→pod (2 nodes, cpu-pinned)"
        self.rows = {(v, metric, path): Measurement(name, f"{metric} {path}, {label}", unit, [],
                                                    baseline_name=BASELINE)
                     for v, label in VARIANTS.items() for metric, unit, _ in METRICS for path in PATHS}
        self.tunnel = TunnelRows(name, VARIANTS, METRICS) if KERNEL_TUNNEL else None

    def all(self) -> list[Measurement]:
        return list(self.rows.values()) + (self.tunnel.measurements() if self.tunnel else [])

    def add(self, variant: str, path: str, ours: Sample, kernel: Sample, tunnel: Sample | None = None) -> None:
        if self.tunnel:
            self.tunnel.add(variant, path, ours, tunnel)
        for metric, _, attr in METRICS:
            row = self.rows[(variant, metric, path)]
            row.subject.append(getattr(ours, attr))
            row.baseline.append(getattr(kernel, attr))


def _sample(client_ns: str, server_ip: str, rr: str) -> Sample:
    return measure(client_ns, server_ip, rr, IPERF_SECONDS, RR_SECONDS)


def _show(run: int, path: str, what: str, s: Sample) -> None:
    print(f"  run {run} {path:12} {what:42}: {s.gbits:6.2f} Gbit/s {s.rr:8,.0f} RR/s {s.crr:7,.0f} CRR/s",
          flush=True)


def run(runs: int) -> list[Measurement]:
    rows = Rows()
    workdir = tempfile.mkdtemp(prefix="membrane-bench-")
    try:
        rr = build_rr(workdir)
        with bench_lab(2, *LAB_SETTINGS) as lab:
            paths = LabPaths(lab)
            prefix = paths.netns_prefix
            with routed_pair(prefix, "k", 77) as kernel, routed_pair(prefix, "i", 78) as ipt, \
                    routed_pair(prefix, "p", 79) as kp, kernel_tunnel_pair(prefix, KERNEL_TUNNEL) as vx:
                notes = _in_lab(lab, runs, rows, rr, kernel, ipt, kp, vx)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for m in rows.all():
        m.notes = notes
    return rows.all()


def _in_lab(lab: str, runs: int, rows: Rows, rr: str, kernel: RoutedPair, ipt: RoutedPair, kp: RoutedPair,
            vx: RoutedPair | None) -> str:
    paths = LabPaths(lab)
    membrane(lab, "apply", "-f", "-", input=PODS)
    pods = wait_pods(lab, ["bench-srv", "bench-open", "bench-cli-local", "bench-cli-remote"])
    ip = {n: p["status"]["podIP"] for n, p in pods.items()}
    netns = {n: paths.pod_netns("default", n) for n in ip}
    membrane(lab, "apply", "-f", "-", input=ALLOW_CLIENTS)
    policy = ServerPolicy(lab, ip["bench-srv"], [ip["bench-cli-local"], ip["bench-cli-remote"]])
    policy.ensure_enforced(wait=15)

    def cluster_ip() -> str:
        svc = json.loads(membrane(lab, "get", "svc", "bench-srv", "-o", "json"))
        return str(svc.get("spec", {}).get("clusterIP") or "")

    vip = str(wait_until(cluster_ip, 30))
    load_s = sum(iptables_forward_rules(ns, IPTABLES_RULES, (IPERF_PORT, RR_PORT)) for ns in ipt.nodes)
    clients = {"same node": netns["bench-cli-local"], "across nodes": netns["bench-cli-remote"]}
    node_pins = [paths.bpffs_dir(SERVER_NODE), paths.bpffs_dir(REMOTE_NODE)]
    t0 = time.perf_counter()
    policy.add_fillers()
    publish_identity_fillers(lab, node_pins)
    fill_s = time.perf_counter() - t0
    server_ns = (netns["bench-srv"], netns["bench-open"], kernel.server_ns, ipt.server_ns, kp.server_ns,
                 *([vx.server_ns] if vx else []))
    servers = [Servers(ns, rr) for ns in server_ns]
    try:
        for ns in server_ns:
            wait_listening(ns)
        targets = {
            "iptables": (ipt.clients(), ipt.server_ip),
            "open": (clients, ip["bench-open"]),
            "policy": (clients, ip["bench-srv"]),
        }
        hits_before = policy.allow_hits()
        lost = 0
        for i in range(runs):
            # The order of the variants rotates between runs, so drift over a run favours none of them.
            order = list(targets)[i % 3:] + list(targets)[:i % 3]
            policy.add_fillers()  # again: the agent's periodic policy-map resync removes entries it did not write
            for path in PATHS:
                base = _sample(kernel.clients()[path], kernel.server_ip, rr)
                _show(i + 1, path, BASELINE, base)
                tunnel = _sample(vx.clients()[path], vx.server_ip, rr) if vx and path == "across nodes" else None
                if tunnel:
                    _show(i + 1, path, TUNNEL_BASELINE, tunnel)
                for variant in order:
                    client_map, server_ip = targets[variant]
                    ours = _sample(client_map[path], server_ip, rr)
                    _show(i + 1, path, VARIANTS[variant], ours)
                    rows.add(variant, path, ours, base, tunnel)
            if policy.entries() < FILLERS:
                lost += 1
        t0 = time.perf_counter()
        for pin in node_pins:
            load_services(pin)
        svc_s = time.perf_counter() - t0
        kp_rules = kube_proxy_ruleset(EXTRA_SERVICES, KUBE_PROXY_VIP, kp.server_ip, (IPERF_PORT, RR_PORT))
        kp_s = sum(load_kube_proxy(ns, kp_rules) for ns in kp.nodes)
        with_services = {"service": (clients, vip), "kubeproxy": (kp.clients(), KUBE_PROXY_VIP)}
        reloads = 0
        for i in range(runs):
            for pin in node_pins:  # again if the agent's periodic LB prune removed the services it did not write
                if i and services_left(pin) < EXTRA_SERVICES:
                    load_services(pin)
                    reloads += 1
            order = ["kernel", *with_services]
            order = order[i % 3:] + order[:i % 3]
            for path in PATHS:
                got: dict[str, Sample] = {}
                for what in order:
                    client_map, server_ip = (kernel.clients(), kernel.server_ip) if what == "kernel" \
                        else with_services[what]
                    got[what] = _sample(client_map[path], server_ip, rr)
                _show(i + 1, path, BASELINE, got["kernel"])
                for variant in with_services:
                    _show(i + 1, path, VARIANTS[variant], got[variant])
                    rows.add(variant, path, got[variant], got["kernel"])
        hits = policy.allow_hits() - hits_before
        svc_left = services_left(node_pins[1])
        ids_left = identity_fillers_left(node_pins)
        ipt_rules = forward_rule_count(ipt.nodes[0])
        kp_entries = nat_rule_count(kp.nodes[0])
    finally:
        for s in servers:
            s.close()
    notes = (f"processes pinned to cpu {CPU}; iperf3 {IPERF_SECONDS:g} s, RR/CRR {RR_SECONDS:g} s (bench/rr.c); "
             f"bench-srv ingress enforced ({hits} new connections decided by its allow entries); "
             f"{FILLERS} policy entries + {FILLERS} identities published in the store's ipcache, in both nodes' "
             f"maps after {fill_s:.1f} s "
             f"({ids_left} identities still present at the end); {EXTRA_SERVICES} services × {BACKENDS_EACH} "
             f"backends loaded per node in {svc_s / 2:.1f} s ({svc_left} still present at the end); iptables "
             f"contrast: {ipt_rules} FORWARD rules per node (loaded in {load_s / 2:.1f} s each, iptables-nft); kube-proxy "
             f"contrast: its iptables-mode nat table for {EXTRA_SERVICES} Services × 10 endpoints + the benchmark's "
             f"({kp_entries} KUBE-SERVICES rules, the benchmark's halfway down) on both scratch nodes, loaded with "
             f"iptables-legacy-restore in {kp_s / 2:.1f} s each")
    if policy.by_bench:
        notes += f"; set by the benchmark, not the agent: {', '.join(policy.by_bench)}"
    if reloads:
        notes += f"; the extra services were loaded again {reloads} time(s) after the agent's LB prune removed them"
    if lost:
        notes += f"; WARNING: the filler policy entries were partly removed (by an agent resync?) in {lost} run(s)"
    if hits == 0:
        print("  WARNING: the allow entries decided no connection: policy was not enforced", flush=True)
    return notes
