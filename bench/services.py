"""Service update latency: one Service change with N existing Services × 10 backends, eBPF maps vs kube-proxy.

Ours: the node's LB maps (membrane.datapath.maps.lb.LBMaps) created by loading the datapath
(membrane.datapath.loader.NodeDatapath) into a scratch pin dir ``/sys/fs/bpf/membrane/bench-svc-<hex>``,
filled with N ClusterIP Services of 10 backends each; then ONE change — a backend added to one Service —
is written with ``LBMaps.upsert_service`` (what the agent's LB sync does for a changed frontend) and timed.
The object is compiled from bpf/ with the LB maps' size raised (``LB_MAP_SIZE``, 65536 in the tree, holds
only ~5 900 Services × 10 backends, one svc entry per backend slot; Cilium's ``bpf.lbMapMax`` is likewise
65536 by default and must be raised for such clusters). Struct layouts are unchanged.

Baselines, in the same run, interleaved with ours (A B A B): ``iptables-restore`` (nft backend) into a
scratch netns of the kube-proxy nat ruleset for the same N Services (KUBE-SERVICES → KUBE-SVC-* →
KUBE-SEP-* with ``statistic --mode random`` DNAT rules, as kube-proxy writes them), already loaded once,
now with the change:

* full: the whole nat ruleset, every chain declared (so flushed and refilled), ``--noflush`` as kube-proxy
  runs it (its full sync; every sync before MinimizeIPTablesRestore, GA in 1.28),
* partial: ``--noflush`` with the top-level chains (KUBE-SERVICES, KUBE-NODEPORTS, …) in full plus the
  changed Service's KUBE-SVC chain and its new KUBE-SEP chain (kube-proxy ≥ 1.28's partial sync).

Default N = 1000 (a full iptables-nft restore of the 10 000-service ruleset takes minutes on this
machine, beyond `make bench`'s budget; ``MEMBRANE_BENCH_SERVICES=1000,10000`` adds it, and needs the LB
maps raised above their 65 536 entries, which the benchmark does in a scratch build).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.harness import Measurement
from membrane.datapath.loader import NodeDatapath, compile_object, remove_pins, repo_root
from membrane.datapath.maps.lb import Backend, Frontend, LBMaps

SIZES = tuple(int(n) for n in os.environ.get("MEMBRANE_BENCH_SERVICES", "1000").split(","))
BACKENDS = 10
LB_MAP_SIZE = 262144  # ≥ 10 000 × (10 + 1) svc slots and 100 000 backends, with room for the changes
PIN_ROOT = "/sys/fs/bpf/membrane"
CLUSTER_CIDR = "10.0.0.0/8"


def cluster_ip(i: int) -> str:
    return f"10.96.{i // 250}.{i % 250 + 1}"


def pod_ip(backend_id: int) -> str:
    return f"10.{1 + backend_id // 65536}.{backend_id // 256 % 256}.{backend_id % 256}"


class Cluster:
    """N Services (``default/svc-<i>:http``, port 80/TCP → 8080) with their backends by id."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.backends: list[list[int]] = [[i * BACKENDS + j + 1 for j in range(BACKENDS)] for i in range(n)]
        self.next_id = n * BACKENDS + 1

    def add_backend(self, i: int) -> None:
        self.backends[i].append(self.next_id)
        self.next_id += 1

    def map_backends(self, i: int) -> list[Backend]:
        return [Backend(b, pod_ip(b), 8080) for b in self.backends[i]]

    def frontend(self, i: int) -> Frontend:
        return Frontend(cluster_ip(i), 80)


# -- kube-proxy's iptables ruleset -------------------------------------------------------------

def _chain(prefix: str, *parts: str) -> str:
    """kube-proxy's chain names: prefix + the first 16 base32 chars of sha256 of the parts."""
    digest = hashlib.sha256("".join(parts).encode()).digest()
    return prefix + base64.b32encode(digest).decode()[:16]


def _svc_chain(i: int) -> str:
    return _chain("KUBE-SVC-", f"default/svc-{i}:http", "tcp")


def _sep_chain(i: int, backend_id: int) -> str:
    return _chain("KUBE-SEP-", f"default/svc-{i}:http", "tcp", f"{pod_ip(backend_id)}:8080")


def _top_level(cluster: Cluster) -> tuple[list[str], list[str]]:
    """(declarations, rules) of the chains kube-proxy always rewrites; one KUBE-SERVICES rule per Service."""
    chains = [":KUBE-SERVICES - [0:0]", ":KUBE-NODEPORTS - [0:0]", ":KUBE-POSTROUTING - [0:0]",
              ":KUBE-MARK-MASQ - [0:0]"]
    rules = ["-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
             "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
             '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
             "-j MASQUERADE --random-fully",
             "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000"]
    for i in range(cluster.n):
        rules.append(f'-A KUBE-SERVICES -d {cluster_ip(i)}/32 -p tcp -m comment --comment "default/svc-{i}:http '
                     f'cluster IP" -m tcp --dport 80 -j {_svc_chain(i)}')
    rules.append('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last '
                 'rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')
    return chains, rules


def _service_chains(cluster: Cluster, i: int, seps: list[int] | None = None) -> tuple[list[str], list[str]]:
    """(declarations, rules): KUBE-SVC-<i> (masquerade off-cluster clients, then one statistic rule per
    endpoint) and the KUBE-SEP chains of ``seps`` (default: all of its endpoints)."""
    svc, backends = _svc_chain(i), cluster.backends[i]
    seps = backends if seps is None else seps
    chains = [f":{svc} - [0:0]"] + [f":{_sep_chain(i, b)} - [0:0]" for b in seps]
    rules = [f'-A {svc} ! -s {CLUSTER_CIDR} -d {cluster_ip(i)}/32 -p tcp -m comment --comment '
             f'"default/svc-{i}:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ']
    for k, b in enumerate(backends):
        left = len(backends) - k
        stat = "" if left == 1 else f" -m statistic --mode random --probability {1 / left:.11f}"
        rules.append(f'-A {svc} -m comment --comment "default/svc-{i}:http -> {pod_ip(b)}:8080"{stat} '
                     f"-j {_sep_chain(i, b)}")
    for b in seps:
        sep = _sep_chain(i, b)
        rules += [f'-A {sep} -s {pod_ip(b)}/32 -m comment --comment "default/svc-{i}:http" -j KUBE-MARK-MASQ',
                  f'-A {sep} -p tcp -m comment --comment "default/svc-{i}:http" -m tcp '
                  f"-j DNAT --to-destination {pod_ip(b)}:8080"]
    return chains, rules


def _ruleset(parts: list[tuple[list[str], list[str]]]) -> str:
    """kube-proxy's layout: every chain declaration first, then the rules."""
    chains = [c for part in parts for c in part[0]]
    rules = [r for part in parts for r in part[1]]
    return "\n".join(["*nat", *chains, *rules, "COMMIT", ""])


def full_ruleset(cluster: Cluster) -> str:
    return _ruleset([_top_level(cluster)] + [_service_chains(cluster, i) for i in range(cluster.n)])


def partial_ruleset(cluster: Cluster, changed: int) -> str:
    """kube-proxy ≥ 1.28 after one Service gained an endpoint (restored with --noflush)."""
    return _ruleset([_top_level(cluster), _service_chains(cluster, changed, seps=cluster.backends[changed][-1:])])


HOOKS = """*nat
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
COMMIT
"""


def _restore(netns: str, rules: str, noflush: bool = False) -> float:
    cmd = ["ip", "netns", "exec", netns, "iptables-restore", *(["--noflush"] if noflush else [])]
    t0 = time.perf_counter()
    subprocess.run(cmd, input=rules, text=True, check=True, capture_output=True, timeout=3600)
    return time.perf_counter() - t0


def rule_count(rules: str) -> int:
    return sum(1 for line in rules.splitlines() if line.startswith("-A "))


# -- scratch resources -------------------------------------------------------------------------

@contextmanager
def scratch_maps() -> Iterator[LBMaps]:
    """The LB maps of a freshly loaded datapath (LB_MAP_SIZE raised) in a scratch pin dir, removed after."""
    tmp = tempfile.mkdtemp(prefix="mb-bench-svc-")
    pin_dir = os.path.join(PIN_ROOT, f"bench-svc-{secrets.token_hex(4)}")
    datapath = None
    try:
        src = os.path.join(tmp, "bpf")
        shutil.copytree(repo_root() / "bpf", src)
        maps_h = os.path.join(src, "lib", "maps.h")
        with open(maps_h) as fh:
            text = fh.read()
        patched = text.replace("#define LB_MAP_SIZE        65536", f"#define LB_MAP_SIZE        {LB_MAP_SIZE}")
        if patched == text:
            raise RuntimeError(f"{maps_h}: LB_MAP_SIZE definition not found, cannot size the maps")
        with open(maps_h, "w") as fh:
            fh.write(patched)
        obj = compile_object("lxc", os.path.join(tmp, "out"), source_dir=src)
        os.makedirs(PIN_ROOT, exist_ok=True)
        datapath = NodeDatapath(pin_dir, object_path=obj)
        datapath.load()
        yield datapath.lb
    finally:
        if datapath is not None:
            datapath.close()
        if os.path.isdir(pin_dir):
            remove_pins(pin_dir)
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def scratch_netns() -> Iterator[str]:
    name = f"mb-bench-svc-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


# -- the benchmark -----------------------------------------------------------------------------

def _fill(lb: LBMaps, cluster: Cluster) -> float:
    t0 = time.perf_counter()
    for i in range(cluster.n):
        lb.upsert_service(cluster.frontend(i), cluster.map_backends(i), rev_nat_index=i + 1)
    return time.perf_counter() - t0


def _measure(n: int, runs: int) -> list[Measurement]:
    cluster = Cluster(n)
    ours: list[float] = []
    full: list[float] = []
    partial: list[float] = []
    with scratch_maps() as lb, scratch_netns() as netns:
        fill = _fill(lb, cluster)
        initial = full_ruleset(cluster)
        initial_rules = rule_count(initial)
        load = _restore(netns, initial, noflush=True)
        _restore(netns, HOOKS, noflush=True)
        print(f"  N={n}: LB maps filled in {fill:.1f} s, {initial_rules} iptables rules loaded in {load:.1f} s",
              flush=True)
        for rep in range(runs):
            changed = (rep * 7919) % n  # a different Service each time
            cluster.add_backend(changed)
            t0 = time.perf_counter()
            lb.upsert_service(cluster.frontend(changed), cluster.map_backends(changed), rev_nat_index=changed + 1)
            ours.append((time.perf_counter() - t0) * 1e3)
            head = lb.svc.get(cluster.frontend(changed).key(0))
            if head is None or head.count != len(cluster.backends[changed]):
                raise RuntimeError(f"LB maps: service {changed} has {head.count if head else 0} backends, "
                                   f"expected {len(cluster.backends[changed])}")
            full.append(_restore(netns, full_ruleset(cluster), noflush=True) * 1e3)
            partial.append(_restore(netns, partial_ruleset(cluster, changed), noflush=True) * 1e3)
            print(f"  N={n} run {rep + 1}/{runs}: ours {ours[-1]:.3f} ms, iptables-restore full {full[-1]:.0f} ms, "
                  f"partial {partial[-1]:.0f} ms", flush=True)
    note = (f"{n} ClusterIP services × {BACKENDS} backends; filling the LB maps took {fill:.1f} s; one backend "
            f"added per run (LBMaps.upsert_service); kube-proxy nat ruleset of {initial_rules} rules (first load "
            f"{load:.1f} s)")
    metric = f"update, {n} svc × {BACKENDS} be"
    for name, base in (("full", full), ("partial", partial)):
        ratio = statistics.median(o / b for o, b in zip(ours, base, strict=True))
        print(f"  N={n}: ours {statistics.median(ours):.3f} ms vs iptables-restore {name} "
              f"{statistics.median(base):.0f} ms (medians), ratio ours/iptables {ratio:.2e}", flush=True)
    note += "; ratios ours/iptables (full, partial): " + ", ".join(
        f"{statistics.median(o / b for o, b in zip(ours, base, strict=True)):.2e}" for base in (full, partial))
    return [
        Measurement("services", metric, "ms", ours, full, "iptables-restore full (nft)", higher_is_better=False,
                    notes=note),
        Measurement("services", metric, "ms", list(ours), partial, "iptables-restore --noflush partial (nft)",
                    higher_is_better=False, notes=note),
    ]


def run(runs: int) -> list[Measurement]:
    if shutil.which("iptables-restore") is None:
        raise RuntimeError("iptables-restore is not installed (apt: iptables)")
    out: list[Measurement] = []
    for n in SIZES:
        out += _measure(n, runs)
    return out
