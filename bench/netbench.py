"""What every network benchmark shares: fresh labs, the iperf3/rr servers and the measurement itself.

``measure`` runs iperf3 (TCP, one stream), then bench/rr.c in request/response (TCP_RR) and
connect/request/response/close (TCP_CRR) mode from a client namespace, every process pinned to one vCPU
(``MEMBRANE_BENCH_CPU``, default 1): unpinned RR is bimodal on these VMs (see bench/README.md).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from membrane.lab.paths import LabPaths
from membrane.store.etcd import EtcdClient
from membrane.store.resources import ResourceStore

MEMBRANE = os.path.join(os.path.dirname(sys.executable), "membrane")
RR_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rr.c")
CPU = os.environ.get("MEMBRANE_BENCH_CPU", "1")
IPERF_PORT, RR_PORT = 5201, 7001
IPERF_SECONDS, RR_SECONDS = 3.0, 1.5


# ---- labs -------------------------------------------------------------------------------------


def membrane(lab: str, *args: str, input: str | None = None, timeout: float = 300) -> str:
    proc = subprocess.run([MEMBRANE, "--lab", lab, *args], input=input, text=True, capture_output=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"membrane --lab {lab} {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


@contextmanager
def bench_lab(nodes: int, *settings: str) -> Iterator[str]:
    """A fresh lab with a unique name, always deleted afterwards; ``settings`` are ``--set`` Helm values."""
    lab = f"bench{secrets.token_hex(3)}"
    try:
        sets = [arg for kv in settings for arg in ("--set", kv)]
        membrane(lab, "lab", "create", "--nodes", str(nodes), *sets, timeout=300)
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


def measure(client_ns: str, server_ip: str, rr: str, iperf_seconds: float = IPERF_SECONDS,
            rr_seconds: float = RR_SECONDS) -> Sample:
    """One sample of the three metrics from ``client_ns`` to ``server_ip`` (servers already listening)."""
    out = subprocess.run(in_ns(client_ns, "iperf3", "-c", server_ip, "-p", str(IPERF_PORT), "-t", f"{iperf_seconds:g}",
                               "-J"), capture_output=True, text=True, timeout=iperf_seconds + 30)
    if out.returncode != 0:
        raise RuntimeError(f"iperf3 {client_ns} -> {server_ip}: {out.stdout[-400:]} {out.stderr[-400:]}")
    gbits = json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9
    rates = []
    for mode in ("rr", "crr"):
        res = subprocess.run(in_ns(client_ns, rr, mode, server_ip, str(RR_PORT), f"{rr_seconds:g}"),
                             capture_output=True, text=True, timeout=rr_seconds + 30)
        if res.returncode != 0:
            raise RuntimeError(f"{mode} {client_ns} -> {server_ip}: {res.stderr.strip()}")
        count, seconds = res.stdout.split()
        rates.append(int(count) / float(seconds))
    return Sample(gbits, rates[0], rates[1])
