"""The datapath benchmark's kernel baselines: the lab's shape with plain routing and no BPF at all.

``routed_pair(prefix, tag)`` builds, in scratch namespaces named under ``prefix`` (a lab's netns prefix, so
``membrane lab delete`` sweeps them after a crash): an underlay namespace with a bridge, two node namespaces
attached to it (``eth1``, IP forwarding on), a server pod and a same-node client pod on node 1 and a client
pod on node 2. Pods are wired as Membrane wires them — an IPv4 /32 on ``eth0``, a default route via the
node's router IP on-link, a host-side veth with a /32 route to the pod — but the node forwards with its
ordinary routing table (the router IP is a local address on ``lo``, so the node's ARP answers for it) and
reaches the other node's pods through a route via that node's underlay address, as Cilium's native routing
with ``autoDirectNodeRoutes`` does. With ``tunnel=True`` the nodes reach each other's pods through a kernel
VXLAN device instead (``vxlan0``, VNI 1, UDP 8472 like Cilium's default, point to point to the other node's
underlay address) and every pod interface has MTU 1450, the 50 bytes Membrane's tunnel mode takes off too.

``iptables_forward_rules(ns, count)`` loads ``count`` non-matching filter FORWARD rules (one per remote
source address and port, the way per-peer allow rules of an iptables CNI or policy engine grow), followed by
the ACCEPT that lets the traffic through: every forwarded packet is compared against all of them.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

UNDERLAY_CIDR = "192.0.2.{}/24"  # TEST-NET-1: exists only inside these scratch namespaces


@dataclass(frozen=True)
class RoutedPair:
    """Namespaces and addresses of one scratch two-node topology."""

    nodes: tuple[str, str]
    server_ns: str
    server_ip: str
    local_client_ns: str
    remote_client_ns: str

    def clients(self) -> dict[str, str]:
        return {"same node": self.local_client_ns, "across nodes": self.remote_client_ns}


def _ip(*args: str, netns: str | None = None, input: str | None = None) -> None:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    proc = subprocess.run(cmd, input=input, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")


def _sysctl(netns: str, key: str, value: str) -> None:
    proc = subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw", f"{key}={value}"], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"sysctl {key} in {netns}: {proc.stderr.strip()}")


VXLAN_PORT, VXLAN_OVERHEAD = 8472, 50


def node_setup(i: int, subnet: int, tunnel: bool) -> str:
    """``ip -batch`` lines for node ``i`` (1 or 2): its underlay address, its router IP and the route to the other
    node's pod CIDR, via the other node's underlay address or, with ``tunnel``, through ``vxlan0``."""
    other = 3 - i
    lines = [f"addr add {UNDERLAY_CIDR.format(i)} dev eth1", "link set eth1 up", f"addr add 10.{subnet}.{i}.1/32 dev lo"]
    if not tunnel:
        return "\n".join([*lines, f"route add 10.{subnet}.{other}.0/24 via 192.0.2.{other} dev eth1", ""])
    return "\n".join([
        *lines,
        f"link add vxlan0 type vxlan id 1 local 192.0.2.{i} remote 192.0.2.{other} dstport {VXLAN_PORT} dev eth1",
        f"addr add 10.{subnet}.{i}.1/32 dev vxlan0",  # the source of its ARP requests for the other router IP
        "link set vxlan0 up",
        f"route add 10.{subnet}.{other}.0/24 via 10.{subnet}.{other}.1 dev vxlan0 onlink", ""])


def _add_pod(node_ns: str, pod_ns: str, host_if: str, pod_ip: str, router_ip: str, mtu: int | None = None) -> None:
    _ip("netns", "add", pod_ns)
    mtu_arg = f" mtu {mtu}" if mtu else ""
    _ip("-batch", "-", netns=node_ns, input=(
        f"link add {host_if}{mtu_arg} type veth peer name eth0{mtu_arg} netns {pod_ns}\n"
        f"link set {host_if} up\n"
        f"route add {pod_ip}/32 dev {host_if}\n"))
    _ip("-batch", "-", netns=pod_ns, input=(
        "link set lo up\n"
        f"addr add {pod_ip}/32 dev eth0\n"
        "link set eth0 up\n"
        f"route add {router_ip}/32 dev eth0 scope link\n"
        f"route add default via {router_ip} dev eth0 onlink\n"))


@contextmanager
def routed_pair(prefix: str, tag: str, subnet: int, tunnel: bool = False) -> Iterator[RoutedPair]:
    """Two nodes with plain kernel routing (or a kernel VXLAN tunnel between them, ``tunnel``); ``subnet`` picks
    the pod CIDRs 10.<subnet>.{1,2}.0/24."""
    underlay = f"{prefix}{tag}-ul"
    nodes = (f"{prefix}{tag}-n1", f"{prefix}{tag}-n2")
    server, local, remote = f"{prefix}{tag}-srv", f"{prefix}{tag}-cl", f"{prefix}{tag}-cr"
    created: list[str] = []
    try:
        for ns in (underlay, *nodes):
            _ip("netns", "add", ns)
            created.append(ns)
            _ip("link", "set", "lo", "up", netns=ns)
        _ip("link", "add", "br0", "type", "bridge", netns=underlay)
        _ip("link", "set", "br0", "up", netns=underlay)
        for i, ns in enumerate(nodes, start=1):
            _ip("link", "add", f"n{i}", "type", "veth", "peer", "name", "eth1", "netns", ns, netns=underlay)
            _ip("link", "set", f"n{i}", "master", "br0", "up", netns=underlay)
            _ip("-batch", "-", netns=ns, input=node_setup(i, subnet, tunnel))
            _sysctl(ns, "net.ipv4.ip_forward", "1")
        server_ip = f"10.{subnet}.1.10"
        for pod_ns, node_ns, host_if, ip in ((server, nodes[0], "lxcsrv", server_ip),
                                            (local, nodes[0], "lxccl", f"10.{subnet}.1.11"),
                                            (remote, nodes[1], "lxccr", f"10.{subnet}.2.11")):
            created.append(pod_ns)
            _add_pod(node_ns, pod_ns, host_if, ip, f"10.{subnet}.{1 if node_ns == nodes[0] else 2}.1",
                     1500 - VXLAN_OVERHEAD if tunnel else None)
        yield RoutedPair(nodes, server, server_ip, local, remote)
    finally:
        for ns in reversed(created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def forward_ruleset(count: int, ports: tuple[int, ...]) -> str:
    """``count`` FORWARD rules that match nothing the benchmark sends (sources in 10.250.0.0/16), then ACCEPT."""
    rules = [f"-A FORWARD -s 10.250.{i >> 8 & 255}.{i & 255}/32 -p tcp -m tcp --dport {ports[i % len(ports)]} "
             "-j ACCEPT" for i in range(count)]
    return "\n".join(["*filter", ":FORWARD DROP [0:0]", *rules, "-A FORWARD -j ACCEPT", "COMMIT", ""])


def iptables_forward_rules(netns: str, count: int, ports: tuple[int, ...]) -> float:
    """Load the ruleset into ``netns`` with ``iptables-restore`` (Debian's default, nft backend); seconds taken."""
    t0 = time.perf_counter()
    proc = subprocess.run(["ip", "netns", "exec", netns, "iptables-restore"], input=forward_ruleset(count, ports),
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"iptables-restore in {netns}: {proc.stderr.strip()[:400]}")
    return time.perf_counter() - t0


def forward_rule_count(netns: str) -> int:
    out = subprocess.run(["ip", "netns", "exec", netns, "iptables", "-S", "FORWARD"], capture_output=True,
                         text=True).stdout
    return sum(1 for line in out.splitlines() if line.startswith("-A FORWARD"))


def kube_proxy_ruleset(services: int, vip: str, server_ip: str, ports: tuple[int, ...]) -> str:
    """kube-proxy's iptables-mode nat table for ``services`` Services × 10 endpoints plus one Service at ``vip``
    whose single endpoint is the benchmark's server; its KUBE-SERVICES rules sit halfway down the chain (the
    average position of a Service among ``services``), which every new connection walks until it matches."""
    from bench.kubeproxy_rules import HOOKS, Cluster, full_ruleset

    lines = full_ruleset(Cluster(services)).splitlines()
    chains = [f":KUBE-SVC-BENCH{p} - [0:0]" for p in ports] + [f":KUBE-SEP-BENCH{p} - [0:0]" for p in ports]
    entries = [f"-A KUBE-SERVICES -d {vip}/32 -p tcp -m comment --comment \"default/bench:{p} cluster IP\" "
               f"-m tcp --dport {p} -j KUBE-SVC-BENCH{p}" for p in ports]
    rules = [rule for p in ports for rule in (
        f"-A KUBE-SVC-BENCH{p} -j KUBE-SEP-BENCH{p}",
        f"-A KUBE-SEP-BENCH{p} -s {server_ip}/32 -j KUBE-MARK-MASQ",
        f"-A KUBE-SEP-BENCH{p} -p tcp -m tcp -j DNAT --to-destination {server_ip}:{p}")]
    service_rules = [i for i, line in enumerate(lines) if line.startswith("-A KUBE-SERVICES -d ")]
    middle = service_rules[len(service_rules) // 2]
    first_rule = next(i for i, line in enumerate(lines) if line.startswith("-A "))
    commit = lines.index("COMMIT")
    out = lines[:first_rule] + chains + lines[first_rule:middle] + entries + lines[middle:commit] + rules + lines[commit:]
    return "\n".join(out) + "\n" + HOOKS


def load_kube_proxy(netns: str, ruleset: str) -> float:
    """``iptables-legacy-restore`` of the ruleset into ``netns`` (iptables-nft needs minutes for 10 000
    Services here, see the services benchmark); seconds taken."""
    t0 = time.perf_counter()
    for part in ruleset.split("COMMIT\n"):
        if not part.strip():
            continue
        proc = subprocess.run(["ip", "netns", "exec", netns, "iptables-legacy-restore", "--noflush"],
                              input=part + "COMMIT\n", capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"iptables-legacy-restore in {netns}: {proc.stderr.strip()[:400]}")
    return time.perf_counter() - t0


def nat_rule_count(netns: str) -> int:
    out = subprocess.run(["ip", "netns", "exec", netns, "iptables-legacy-save", "-t", "nat"], capture_output=True,
                         text=True).stdout
    return sum(1 for line in out.splitlines() if line.startswith("-A KUBE-SERVICES"))
