"""Service update latency: one Service change with N existing Services × 10 backends, eBPF maps vs kube-proxy.

Ours: the node's LB maps (membrane.datapath.maps.lb.LBMaps) created by loading the datapath
(membrane.datapath.loader.NodeDatapath) into a scratch pin dir ``/sys/fs/bpf/membrane/bench-svc-<hex>``,
filled with N ClusterIP Services of 10 backends each; then ONE change — a backend added to one Service —
is written with ``LBMaps.upsert_service`` (what the agent's LB sync does for a changed frontend) and timed.
The object is compiled from bpf/ with the LB maps' size raised (``LB_MAP_SIZE``, 65536 in the tree, holds
only ~5 900 Services × 10 backends, one svc entry per backend slot; Cilium's ``bpf.lbMapMax`` is likewise
65536 by default and must be raised for such clusters). Struct layouts are unchanged.

Baselines, each in its own scratch netns already holding kube-proxy's rules for the same N Services
(bench/kubeproxy_rules.py), timed in the same run right after ours (A B A B), with the same change — a
different Service each run. Each timed command is exec'd in the netns the way kube-proxy execs it (fork,
setns, exec: process start included, as in every kube-proxy sync):

* ``iptables-legacy-restore -w 5 -W 100000 --noflush --counters`` (kube-proxy's arguments) of the
  iptables-mode nat table: *partial* (kube-proxy ≥ 1.28's
  MinimizeIPTablesRestore sync: the top-level chains in full — KUBE-SERVICES has N rules — plus the
  changed KUBE-SVC chain and its new KUBE-SEP chain) and *full* (every chain declared, so flushed and
  refilled: kube-proxy's full sync, and every sync before 1.28). Partial runs first (it creates the new
  KUBE-SEP chain), the full rewrite of the same state follows;
* the same two with ``iptables-restore`` (Debian's default, the nft backend), only for N ≤
  ``MEMBRANE_BENCH_IPTABLES_NFT_MAX`` (2000): at N = 10 000 (~320 000 rules) its first load ran for more
  than 5 minutes on this machine, so it is skipped there and the notes say so;
* ``nft -f`` of kube-proxy's nftables mode (GA in 1.31): ``table ip kube-proxy`` with the service-ips
  verdict map, a ``service-<hash>-default/svc-<i>/tcp/http`` chain per Service (masquerade mark for
  off-cluster clients, ``numgen random mod K vmap``) and an ``endpoint-…__<ip>/8080`` chain per endpoint
  (hairpin mark, ``dnat to``), the hook, masquerading, mark-for-masquerade, endpoints-check, firewall and
  cluster-ips-check chains. The timed transaction is the one kube-proxy sends when one Service gained one
  endpoint: every chain of that Service (the new endpoint chain among them) added, flushed and rewritten;
  the map elements are unchanged and every other Service is skipped.

Approximated in the nftables mode: IPv4 only; ClusterIPs only — no NodePorts, ExternalIPs, LB IPs,
session affinity or Local traffic policies (so no external-/local-/firewall- chains or affinity sets, and
empty nodeport/firewall/no-endpoint maps); no ``Drop traffic to unallocated ClusterIPs`` rule (it needs
the ServiceCIDR API); the local-traffic detector is the cluster CIDR (``ip saddr != 10.0.0.0/8``). Chain
names are kube-proxy's (sha256 → base32, 8 chars, then ``ns/name/proto/port[__ip/port]``). Not timed:
the stale-chain scan kube-proxy runs before each sync transaction (``nft --json list chains ip``, what
knftables' List ran; newer knftables lists the whole table) — measured once per size, after the runs,
and given in the notes. The first load of the nft table is one transaction, as kube-proxy sends it, up to
``NFT_LOAD_CHUNK`` Services; above that it is loaded in transactions of that many Services (same end
state) because one transaction of 10 000 Services takes ~3 minutes of kernel time here (it grows much
faster than linearly).
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from bench.harness import Measurement
from bench.kubeproxy_rules import (
    BACKENDS,
    HOOKS,
    Cluster,
    cluster_ip,
    full_ruleset,
    ipt_service_chain,
    nft_counts,
    nft_full,
    nft_partial,
    nft_service_chain,
    partial_ruleset,
    pod_ip,
    rule_count,
)
from membrane.datapath.loader import NodeDatapath, compile_object, remove_pins, repo_root
from membrane.datapath.maps.lb import Backend, Frontend, LBMaps

__all__ = ["Cluster", "full_ruleset", "partial_ruleset", "rule_count", "run"]

SIZES = tuple(int(n) for n in os.environ.get("MEMBRANE_BENCH_SERVICES", "1000,10000").split(","))
IPTABLES_NFT_MAX = int(os.environ.get("MEMBRANE_BENCH_IPTABLES_NFT_MAX", "2000"))
NFT_LOAD_CHUNK = 1000
LB_MAP_SIZE = 262144  # ≥ 10 000 × (10 + 1) svc slots and 100 000 backends, with room for the changes
PIN_ROOT = "/sys/fs/bpf/membrane"
IPTABLES_RESTORE_ARGS = ("-w", "5", "-W", "100000", "--noflush", "--counters")  # as kube-proxy runs it
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def frontend(i: int) -> Frontend:
    return Frontend(cluster_ip(i), 80)


def map_backends(cluster: Cluster, i: int) -> list[Backend]:
    return [Backend(b, pod_ip(b), 8080) for b in cluster.backends[i]]


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


def _enter(netns: str) -> Callable[[], None]:
    """A preexec_fn: join the netns between fork and exec (what ``ip netns exec`` does, minus its own exec)."""
    path = f"/run/netns/{netns}"

    def enter() -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {path}")
        finally:
            os.close(fd)
    return enter


def _exec(netns: str, cmd: list[str], stdin: str | None = None) -> tuple[float, str]:
    """Run ``cmd`` inside ``netns``; (seconds, stdout)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, input=stdin, text=True, capture_output=True, timeout=900,
                          preexec_fn=_enter(netns))  # single-threaded: preexec_fn is safe
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} in {netns}: exit {proc.returncode}: {proc.stderr.strip()[:2000]}")
    return elapsed, proc.stdout


# -- the kube-proxy baselines ------------------------------------------------------------------

@dataclass
class Baseline:
    """One timed command per run, in one netns (full and partial of a tool share it)."""

    name: str
    netns: str
    cmd: list[str]
    script: Callable[[Cluster, int], str]
    samples: list[float] = field(default_factory=list)

    def apply(self, cluster: Cluster, changed: int) -> float:
        text = self.script(cluster, changed)  # generated before the clock starts
        seconds = _exec(self.netns, self.cmd, text)[0]
        self.samples.append(seconds * 1e3)
        return seconds


def _iptables(tool: str, label: str, netns: str, cluster: Cluster) -> tuple[list[Baseline], str]:
    """Load the nat table with ``tool`` (first load timed) and return its (partial, full) baselines."""
    initial = full_ruleset(cluster)
    cmd = [tool, *IPTABLES_RESTORE_ARGS]
    load = _exec(netns, cmd, initial)[0]
    _exec(netns, cmd, HOOKS)
    chains = sum(1 for line in initial.splitlines() if line.startswith(":"))
    note = f"{label}: {rule_count(initial)} rules in {chains} chains, first load {load:.1f} s"
    return [Baseline(f"{label}, partial sync (kube-proxy ≥ 1.28)", netns, cmd, partial_ruleset),
            Baseline(f"{label}, full sync", netns, cmd, lambda c, _i: full_ruleset(c))], note


def _nftables(netns: str, cluster: Cluster) -> tuple[Baseline, str]:
    scripts = nft_full(cluster, NFT_LOAD_CHUNK)
    load = sum(_exec(netns, ["nft", "-f", "-"], script)[0] for script in scripts)
    chains, rules = (sum(c) for c in zip(*(nft_counts(s) for s in scripts), strict=True))
    how = "one transaction" if len(scripts) == 1 else f"{len(scripts)} transactions of {NFT_LOAD_CHUNK} Services"
    note = f"nft table ip kube-proxy: {rules} rules in {chains} chains, first load {load:.1f} s ({how})"
    return Baseline("nft -f (kube-proxy nftables mode), partial sync", netns, ["nft", "-f", "-"], nft_partial), note


def _check_baselines(baselines: list[Baseline], cluster: Cluster, changed: int) -> None:
    """After the runs: the changed Service's chain has its new endpoint in every baseline's netns."""
    want = len(cluster.backends[changed])
    for netns in dict.fromkeys(b.netns for b in baselines):
        cmd = next(b.cmd[0] for b in baselines if b.netns == netns)
        if cmd == "nft":
            out = _exec(netns, ["nft", "list", "chain", "ip", "kube-proxy", nft_service_chain(changed)])[1]
            got = out.count(": goto endpoint-")
        else:
            out = _exec(netns, [cmd.replace("-restore", ""), "-t", "nat", "-S", ipt_service_chain(changed)])[1]
            got = out.count(" -j KUBE-SEP-")
        if got != want:
            raise RuntimeError(f"{cmd} in {netns}: service {changed} has {got} endpoints, expected {want}")


# -- the benchmark -----------------------------------------------------------------------------

def _fill(lb: LBMaps, cluster: Cluster) -> float:
    t0 = time.perf_counter()
    for i in range(cluster.n):
        lb.upsert_service(frontend(i), map_backends(cluster, i), rev_nat_index=i + 1)
    return time.perf_counter() - t0


def _stale_scan(netns: str) -> float:
    """kube-proxy nftables mode's stale-chain scan before each sync transaction (not in the timed figure)."""
    return _exec(netns, ["nft", "--json", "list", "chains", "ip"])[0]


def _measure(n: int, runs: int) -> list[Measurement]:
    cluster = Cluster(n)
    ours: list[float] = []
    notes: list[str] = []
    with ExitStack() as stack:
        lb = stack.enter_context(scratch_maps())
        fill = _fill(lb, cluster)
        notes.append(f"{n} ClusterIP services × {BACKENDS} backends; filling the LB maps took {fill:.1f} s; "
                     "one backend added per run (LBMaps.upsert_service)")
        print(f"  N={n}: LB maps filled in {fill:.1f} s", flush=True)
        baselines, note = _iptables("iptables-legacy-restore", "iptables-legacy-restore",
                                    stack.enter_context(scratch_netns()), cluster)
        notes.append(note)
        print(f"  N={n}: {note}", flush=True)
        if n <= IPTABLES_NFT_MAX:
            more, note = _iptables("iptables-restore", "iptables-restore (nft backend)",
                                   stack.enter_context(scratch_netns()), cluster)
            baselines += more
        else:
            note = (f"iptables-restore (nft backend) skipped at N={n} > {IPTABLES_NFT_MAX}: its first load of "
                    "this ~320 000-rule ruleset ran for more than 5 minutes here (2026-11-21), beyond the "
                    "budget (MEMBRANE_BENCH_IPTABLES_NFT_MAX raises the limit)")
        notes.append(note)
        print(f"  N={n}: {note}", flush=True)
        nft, note = _nftables(stack.enter_context(scratch_netns()), cluster)
        baselines.append(nft)
        notes.append(note)
        print(f"  N={n}: {note}", flush=True)
        for rep in range(runs):
            changed = (rep * 7919 + 13) % n  # a different Service each time
            cluster.add_backend(changed)
            t0 = time.perf_counter()
            lb.upsert_service(frontend(changed), map_backends(cluster, changed), rev_nat_index=changed + 1)
            ours.append((time.perf_counter() - t0) * 1e3)
            head = lb.svc.get(frontend(changed).key(0))
            if head is None or head.count != len(cluster.backends[changed]):
                raise RuntimeError(f"LB maps: service {changed} has {head.count if head else 0} backends, "
                                   f"expected {len(cluster.backends[changed])}")
            for base in baselines:
                base.apply(cluster, changed)
            print(f"  N={n} run {rep + 1}/{runs}: ours {ours[-1]:.3f} ms; "
                  + "; ".join(f"{b.name} {b.samples[-1]:.1f} ms" for b in baselines), flush=True)
        _check_baselines(baselines, cluster, changed)
        scan = _stale_scan(nft.netns)
    notes.append(f"not timed: kube-proxy nftables mode's stale-chain scan before each sync (nft --json list "
                 f"chains ip) took {scan * 1e3:.0f} ms (once, after the runs)")
    metric = f"update, {n} svc × {BACKENDS} be"
    out = []
    for base in baselines:
        ratio = statistics.median(o / b for o, b in zip(ours, base.samples, strict=True))
        print(f"  N={n}: ours {statistics.median(ours):.3f} ms vs {base.name} {statistics.median(base.samples):.1f} "
              f"ms (medians), ratio ours/baseline {ratio:.2e}", flush=True)
        out.append(Measurement("services", metric, "ms", list(ours), base.samples, base.name,
                               higher_is_better=False, notes="; ".join(notes + [f"ratio {ratio:.2e}"])))
    return out


def run(runs: int) -> list[Measurement]:
    for tool, package in (("iptables-legacy-restore", "iptables"), ("iptables-restore", "iptables"),
                          ("nft", "nftables")):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed (apt: {package})")
    out: list[Measurement] = []
    for n in SIZES:
        out += _measure(n, runs)
    return out
