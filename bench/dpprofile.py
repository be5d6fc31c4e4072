"""Where the datapath's time goes per connection: BPF run time of each attached program under TCP_CRR / TCP_RR.

``python -m bench.dpprofile [--seconds S] [--rounds N]`` builds the datapath benchmark's lab (server ``bench-srv``
with its policy, 10 000 policy entries and identities, 10 000 services × 5 backends), switches the datapath's
events off on both nodes (so only the datapath's own work is measured, not the trace events), and for each row
(same node / across nodes to the pod IP, across nodes to the ClusterIP; TCP_CRR and TCP_RR) reports:

* the rate, next to the kernel-routing baseline measured right before it (bench/kernelnet.py);
* per connection (CRR) or per request/response (RR), the nanoseconds each attached tc program ran (the kernel's
  ``run_time_ns`` / ``run_cnt``, ``kernel.bpf_stats_enabled`` switched on only while a sample runs), and how many
  times it ran. Tail calls and global functions count towards the program that was entered.

The program ids are read from ``bpftool net show`` in each node namespace, so only this lab's programs count.
The socket LB's cgroup programs (bpf/sock.c, ids from the node's pinned links) are counted too; they sit at the
root cgroup, so their run counts include every other connect() on the machine (each stopped at the netns gate).
``--socket-lb both`` (the default) runs the ClusterIP row twice in a row, with the client pod's namespace in the
socket LB's map (translated at connect()) and taken out of it (translated per packet by from_container).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
from collections import defaultdict

from bench.datapath import (
    ALLOW_CLIENTS,
    PODS,
    REMOTE_NODE,
    SERVER_NODE,
    ServerPolicy,
    load_services,
    publish_identity_fillers,
)
from bench.kernelnet import RoutedPair, routed_pair
from bench.netbench import (
    RR_PORT,
    Servers,
    bench_lab,
    build_rr,
    in_ns,
    membrane,
    wait_listening,
    wait_pods,
    wait_until,
)
from membrane.datapath.maps.sock_lb import SockNetnsMap
from membrane.datapath.monitor import set_events_enabled
from membrane.datapath.sock_lb import SOCK_PROGRAMS
from membrane.lab.paths import LabPaths

STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"


def tc_programs(net_show: list[dict]) -> dict[int, str]:
    """prog id -> "name@device/direction" from ``bpftool net show -j`` output; pod veths are all "lxc"."""
    progs: dict[int, str] = {}
    for section in net_show:
        for att in section.get("tc", []):
            dev = att.get("devname", "?")
            where = "lxc" if dev.startswith("lxc") else dev
            name = att["name"].split(":")[0]  # bpftool writes "from_netdev:[39088]"
            progs[int(att["id"])] = f"{name}@{where}/{att['kind'].split('/')[-1]}"
    return progs


def per_transaction(progs: dict[int, str], before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]],
                    transactions: int) -> dict[str, tuple[float, float]]:
    """Per program label (programs of one label summed): (ns run per transaction, runs per transaction), from
    (run_cnt, run_time_ns) snapshots taken before and after ``transactions``; labels that did not run left out."""
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for pid, label in progs.items():
        if pid in before and pid in after:
            per[label][0] += after[pid][0] - before[pid][0]
            per[label][1] += after[pid][1] - before[pid][1]
    n = max(transactions, 1)
    return {label: (ns / n, runs / n) for label, (runs, ns) in per.items() if runs}


def _attached(netns: str) -> dict[int, str]:
    out = subprocess.run(["ip", "netns", "exec", netns, "bpftool", "net", "show", "-j"], capture_output=True,
                         text=True, check=True).stdout
    return tc_programs(json.loads(out))


def _stats(ids: set[int]) -> dict[int, tuple[int, int]]:
    out = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True, check=True).stdout
    return {p["id"]: (p.get("run_cnt", 0), p.get("run_time_ns", 0)) for p in json.loads(out) if p["id"] in ids}


def _sock_programs(pin: str) -> dict[int, str]:
    """prog id -> "name@cgroup" of the node's socket LB links (none when the socket LB is off)."""
    progs = {}
    for name, _ in SOCK_PROGRAMS:
        path = os.path.join(pin, "links", name)
        if os.path.exists(path):
            out = subprocess.run(["bpftool", "-j", "link", "show", "pinned", path], capture_output=True, text=True,
                                 check=True).stdout
            progs[int(json.loads(out)["prog_id"])] = f"{name}@cgroup"
    return progs


class SocketLBToggle:
    """Take a client pod's namespace out of the node's mb_sock_netns (and put it back): its connect() then
    goes to the ClusterIP itself and from_container translates it per packet."""

    def __init__(self, pin: str, client_ip: str) -> None:
        with SockNetnsMap.open(pin) as netns:
            self.cookies = [c for c, ip in netns.items().items() if ip == client_ip]
        self.pin, self.client_ip = pin, client_ip

    def set(self, on: bool) -> None:
        with SockNetnsMap.open(self.pin) as netns:
            for cookie in self.cookies:
                if on:
                    netns.add(cookie, self.client_ip)
                else:
                    netns.remove(cookie)


def _rr(client_ns: str, rr: str, mode: str, server_ip: str, seconds: float) -> int:
    res = subprocess.run(in_ns(client_ns, rr, mode, server_ip, str(RR_PORT), f"{seconds:g}"), capture_output=True,
                         text=True, timeout=seconds + 30, check=True)
    return int(res.stdout.split()[0])


def _profiled(client_ns: str, rr: str, mode: str, server_ip: str, seconds: float,
              progs: dict[int, str]) -> tuple[float, dict[str, tuple[float, float]]]:
    """Rate and, per program label, (ns per transaction, runs per transaction)."""
    with open(STATS_SYSCTL) as f:
        was = f.read().strip()
    with open(STATS_SYSCTL, "w") as f:
        f.write("1")
    try:
        before = _stats(set(progs))
        count = _rr(client_ns, rr, mode, server_ip, seconds)
        after = _stats(set(progs))
    finally:
        with open(STATS_SYSCTL, "w") as f:
            f.write(was)
    return count / seconds, per_transaction(progs, before, after, count)


def _perf(out: str, client_ns: str, rr: str, server_ip: str, seconds: float) -> None:
    """TCP_CRR for ``seconds`` under a system-wide ``perf record -g`` (other labs' programs show too: read the
    samples whose call chain holds this row's programs)."""
    perf = subprocess.Popen(["perf", "record", "-a", "-g", "-F", "1999", "-o", out, "--", "sleep", f"{seconds + 1:g}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        count = _rr(client_ns, rr, "crr", server_ip, seconds)
        print(f"perf {out}: {count / seconds:,.0f} CRR/s", flush=True)
    finally:
        perf.wait(timeout=seconds + 30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--events", choices=("off", "on"), default="off")
    ap.add_argument("--socket-lb", choices=("both", "on", "off"), default="both",
                    help="ClusterIP row with the client's socket LB on, off (per-packet) or both, interleaved")
    ap.add_argument("--perf", metavar="PREFIX", help="also `perf record -a -g` each CRR row into PREFIX-<row>.data")
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="membrane-dpprofile-")
    try:
        rr = build_rr(workdir)
        with bench_lab(2) as lab:
            paths = LabPaths(lab)
            with routed_pair(paths.netns_prefix, "k", 77) as kernel:
                _in_lab(lab, rr, kernel, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _in_lab(lab: str, rr: str, kernel: RoutedPair, args: argparse.Namespace) -> None:
    paths = LabPaths(lab)
    pins = [paths.bpffs_dir(SERVER_NODE), paths.bpffs_dir(REMOTE_NODE)]
    membrane(lab, "apply", "-f", "-", input=PODS)
    pods = wait_pods(lab, ["bench-srv", "bench-cli-local", "bench-cli-remote"])
    ip = {n: p["status"]["podIP"] for n, p in pods.items()}
    netns = {n: paths.pod_netns("default", n) for n in ip}
    membrane(lab, "apply", "-f", "-", input=ALLOW_CLIENTS)
    policy = ServerPolicy(lab, ip["bench-srv"], [ip["bench-cli-local"], ip["bench-cli-remote"]])
    policy.ensure_enforced(wait=15)
    policy.add_fillers()
    publish_identity_fillers(lab, pins, timeout=300)  # a loaded machine slows the agents down
    for pin in pins:
        load_services(pin)
        set_events_enabled(pin, args.events == "on")
    vip = wait_until(lambda: json.loads(membrane(lab, "get", "svc", "bench-srv", "-o", "json"))
                     .get("spec", {}).get("clusterIP"), 30)
    progs: dict[int, str] = {}
    for node in (SERVER_NODE, REMOTE_NODE):
        for pid, label in _attached(paths.node_netns(node)).items():
            progs[pid] = f"{node}:{label}"
        for pid, label in _sock_programs(paths.bpffs_dir(node)).items():
            progs[pid] = f"{node}:{label}"
    clients = {"same node": netns["bench-cli-local"], "across nodes": netns["bench-cli-remote"]}
    toggle = SocketLBToggle(paths.bpffs_dir(REMOTE_NODE), ip["bench-cli-remote"])
    modes = {"both": (True, False), "on": (True,), "off": (False,)}[args.socket_lb] if toggle.cookies else (False,)
    rows = [("same node", ip["bench-srv"], True), ("across nodes", ip["bench-srv"], True)]
    rows += [(f"across nodes ClusterIP {'sockLB' if on else 'per-pkt'}", vip, on) for on in modes]
    servers = [Servers(netns["bench-srv"], rr), Servers(kernel.server_ns, rr)]
    try:
        wait_listening(netns["bench-srv"])
        wait_listening(kernel.server_ns)
        for rnd in range(args.rounds):
            for mode in ("crr", "rr"):
                for row, target, slb in rows:
                    path = "same node" if row == "same node" else "across nodes"
                    toggle.set(slb)
                    base = _rr(kernel.clients()[path], rr, mode, kernel.server_ip, args.seconds) / args.seconds
                    rate, per = _profiled(clients[path], rr, mode, str(target), args.seconds, progs)
                    total = sum(ns for ns, _ in per.values())
                    print(f"round {rnd + 1} {mode.upper():3} {row:24} {rate:9,.0f}/s kernel {base:9,.0f}/s "
                          f"ratio {rate / base:5.2f}  BPF {total:7,.0f} ns per {'conn' if mode == 'crr' else 'RR'}",
                          flush=True)
                    for label, (ns, runs) in sorted(per.items(), key=lambda kv: -kv[1][0]):
                        print(f"      {label:48} {ns:7,.0f} ns  {runs:5.1f} runs  {ns / runs:6,.0f} ns/run",
                              flush=True)
        if args.perf:
            for row, target, slb in rows:
                path = "same node" if row == "same node" else "across nodes"
                toggle.set(slb)
                _perf(f"{args.perf}-{row.replace(' ', '_')}.data", clients[path], rr, str(target), args.seconds * 2)
    finally:
        for s in servers:
            s.close()
        toggle.set(True)
        for pin in pins:
            set_events_enabled(pin, True)


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("bench.dpprofile needs root (labs, bpf stats)")
    main()
