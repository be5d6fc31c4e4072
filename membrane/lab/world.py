"""The outside world of a lab: a namespace ``<lab>.world`` on the underlay with "internet" servers.

``create_world(lab, topo)`` adds the namespace, a veth ``w0`` (underlay bridge of the first node's
subnet) ↔ ``eth0`` (world) with the world address (``.200`` of that subnet, or the highest free host if a
node or the router holds it), and on ``lo`` the "internet" addresses (203.0.113.0/24, 198.51.100.0/24,
documentation ranges). It runs there:

- a DNS resolver bound to 198.51.100.53 only (replies must come from the address asked; the lab DNS
  workload in ``--world`` mode) answering WORLD_NAMES,
  NXDOMAIN for anything else; the cluster DNS forwards non-cluster names to it;
- an HTTP server on port 80 of every world address that reports the caller: ``/ip`` as plain text,
  any other path as JSON ``{"ip": ...}`` (like ipinfo.io);
- the same over HTTPS on port 443 (``membrane.lab.world_tls``, a certificate made at start).

Routing, without NAT: every node on the world's subnet gets routes to the world prefixes via the world
address (the router gets them too, so nodes behind it reach the world through their default route),
and the world routes each node's pod CIDR via that node's IP (or the router), read from the Node
objects in the store, so a pod's own IP reaches the world and the replies come back. When pod → world
masquerade lands, those pod CIDR routes simply go unused. ``delete_world`` removes it all; the lab's
prefix sweep removes the namespace and its processes too.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from membrane.lab import processes
from membrane.lab.paths import LabPaths
from membrane.lab.router import desired_router_routes
from membrane.lab.topology import LabTopology
from membrane.model.naming import NETNS_DIR

WORLD = "world"
WORLD_DNS_IP = "198.51.100.53"
WORLD_PREFIXES = ("203.0.113.0/24", "198.51.100.0/24")
WORLD_NAMES: Mapping[str, str] = {
    "one.one.one.one": "203.0.113.11",
    "ipinfo.io": "203.0.113.12",
    "ifconfig.me": "203.0.113.13",
    "example.com": "203.0.113.14",
    "dns.world": WORLD_DNS_IP,
}
HTTP_PORT = 80
ROUTE_PROTO = "static"


class WorldError(Exception):
    pass


@dataclass(frozen=True)
class WorldPlan:
    """Where the world sits: its namespace, its underlay address and the router on its subnet (if any)."""

    netns: str
    address: str  # with prefix length
    bridge: str
    router_ip: str | None
    router_netns: str | None

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]


def plan_world(lab: str, topo: LabTopology) -> WorldPlan:
    """The world's place in ``topo`` (pure)."""
    paths = LabPaths(lab)
    subnet = topo.nodes[0].network
    taken = {n.address for n in topo.nodes} | {ip.split("/")[0] for ip in (topo.router.ips if topo.router else [])}
    taken |= {ip.split("/")[0] for n in topo.nodes for ip in n.extra_ips}  # egress IPs
    hosts = list(subnet.hosts())
    preferred = [subnet.network_address + 200] if subnet.num_addresses > 201 else []
    ip = next((str(h) for h in [*preferred, *reversed(hosts)] if str(h) not in taken), None)
    if ip is None:
        raise WorldError(f"no free address for the world on {subnet}")
    router_ip = router_ns = None
    if topo.router is not None:
        router_ip = next((r.split("/")[0] for r in topo.router.ips
                          if ipaddress.IPv4Interface(r).network == subnet), None)
        router_ns = paths.router_netns(topo.router.name)
    return WorldPlan(paths.node_netns(WORLD), f"{ip}/{subnet.prefixlen}", f"br{topo.subnets.index(subnet)}",
                     router_ip, router_ns)


def world_routes(plan: WorldPlan, topo: LabTopology, nodes: list[dict[str, Any]]) -> dict[str, str]:
    """Destination -> next hop in the world namespace: the pod CIDRs of ``nodes`` (Node objects) and
    the node subnets the world is not on (pure)."""
    subnet = ipaddress.IPv4Interface(plan.address).network
    out: dict[str, str] = {}
    for other in topo.subnets:
        if other != subnet and plan.router_ip:
            out[str(other)] = plan.router_ip
    for cidr, node_ip in desired_router_routes(nodes).items():
        if ipaddress.IPv4Address(node_ip) in subnet:
            out[cidr] = node_ip
        elif plan.router_ip:
            out[cidr] = plan.router_ip
    return out


def _run(*cmd: str, check: bool = True) -> None:
    proc = subprocess.run(list(cmd), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise WorldError(f"{' '.join(cmd)}: {proc.stderr.strip()}")


def _ip(netns: str, *args: str, check: bool = True) -> None:
    _run("ip", "-n", netns, *args, check=check)


def _store_nodes(lab: str, topo: LabTopology) -> list[dict[str, Any]]:
    """Node objects from the lab's store; the topology's pod CIDRs if the store cannot be read."""
    from membrane.store.etcd import EtcdClient
    from membrane.store.resources import ResourceStore

    try:
        with EtcdClient(LabPaths(lab).etcd_endpoint, timeout=3.0) as client:
            nodes, _rev = ResourceStore(client, topo.config.cluster_name).list("core", "Node")
            return nodes
    except Exception:  # noqa: BLE001 - no store (yet): fall back to what the topology knows
        return [{"status": {"addresses": [{"type": "InternalIP", "address": n.address}]},
                 "spec": {"podCIDR": n.pod_cidr}} for n in topo.nodes if n.pod_cidr]


def sync_world_routes(lab: str, topo: LabTopology) -> dict[str, str]:
    """Install the world's routes back to the pod CIDRs (call again when nodes get new pod CIDRs)."""
    plan = plan_world(lab, topo)
    routes = world_routes(plan, topo, _store_nodes(lab, topo))
    for dst, via in routes.items():
        _ip(plan.netns, "route", "replace", dst, "via", via, "proto", ROUTE_PROTO)
    return routes


def create_world(lab: str, topo: LabTopology) -> WorldPlan:
    """Build the world namespace, its servers and the routes between it and the lab's nodes."""
    paths = LabPaths(lab)
    plan = plan_world(lab, topo)
    if os.path.exists(f"{NETNS_DIR}/{plan.netns}"):
        raise WorldError(f"the world of lab {lab!r} already exists")
    try:
        _build(paths, topo, plan)
    except BaseException:
        delete_world(lab, topo)
        raise
    return plan


def _build(paths: LabPaths, topo: LabTopology, plan: WorldPlan) -> None:
    ns = plan.netns
    _run("ip", "netns", "add", ns)
    _ip(ns, "link", "set", "lo", "up")
    _ip(paths.underlay_netns, "link", "add", "w0", "type", "veth", "peer", "name", "eth0", "netns", ns)
    _ip(paths.underlay_netns, "link", "set", "w0", "master", plan.bridge, "up")
    _ip(ns, "addr", "add", plan.address, "dev", "eth0")
    _ip(ns, "link", "set", "eth0", "up")
    for ip in sorted({*WORLD_NAMES.values(), WORLD_DNS_IP}):
        _ip(ns, "addr", "add", f"{ip}/32", "dev", "lo")
    subnet = ipaddress.IPv4Interface(plan.address).network
    for node in topo.nodes:
        if node.network == subnet:
            for prefix in WORLD_PREFIXES:
                _ip(paths.node_netns(node.name), "route", "replace", prefix, "via", plan.ip, "proto", ROUTE_PROTO)
    if plan.router_netns and plan.router_ip:
        for prefix in WORLD_PREFIXES:
            _ip(plan.router_netns, "route", "replace", prefix, "via", plan.ip, "proto", ROUTE_PROTO)
    sync_world_routes(paths.lab, topo)
    os.makedirs(paths.log_dir, exist_ok=True)
    enter = ["nsenter", f"--net={NETNS_DIR}/{ns}"]
    records = [f"--record={name}={ip}" for name, ip in WORLD_NAMES.items()]
    dns = processes.spawn([*enter, sys.executable, "-m", "membrane.lab.workloads.dns", "--world",
                           "--address", WORLD_DNS_IP, "--port", "53", *records], f"{paths.log_dir}/world-dns.log")
    http = processes.spawn([*enter, sys.executable, "-m", "membrane.lab.world", "serve-http",
                            "--port", str(HTTP_PORT)], f"{paths.log_dir}/world-http.log")
    _wait_listening(dns, "udp", 53, f"{paths.log_dir}/world-dns.log")
    _wait_listening(http, "tcp", HTTP_PORT, f"{paths.log_dir}/world-http.log")
    https = processes.spawn([*enter, sys.executable, "-m", "membrane.lab.world_tls", "--port", "443"],
                            f"{paths.log_dir}/world-https.log")  # TLS for serverNames policy (world_tls.py)
    _wait_listening(https, "tcp", 443, f"{paths.log_dir}/world-https.log")


def _wait_listening(rec: processes.ProcRecord, proto: str, port: int, log: str, timeout: float = 15.0) -> None:
    """Wait until the namespace of ``rec`` has a socket bound to ``port`` (read from /proc, no exec)."""
    deadline = time.monotonic() + timeout
    suffix = f":{port:04X}"
    while time.monotonic() < deadline:
        if not processes.is_alive(rec):
            raise WorldError(f"world server exited; see {log}")
        for table in (proto, proto + "6"):  # a dual-stack socket shows in the IPv6 table only
            try:
                with open(f"/proc/{rec.pid}/net/{table}") as fh:
                    lines = fh.read().splitlines()[1:]
            except OSError:
                continue
            if any(line.split()[1].endswith(suffix) for line in lines if line.strip()):
                return
        time.sleep(0.05)
    raise WorldError(f"world server not listening on {proto}/{port} after {timeout}s; see {log}")


def delete_world(lab: str, topo: LabTopology | None = None) -> None:
    """Stop the world's servers, remove its namespace and the nodes' routes to it (idempotent)."""
    paths = LabPaths(lab)
    ns = paths.node_netns(WORLD)
    processes.stop_pids(processes.pids_in_netns([f"{NETNS_DIR}/{ns}"]))
    if os.path.exists(f"{NETNS_DIR}/{ns}"):
        _run("ip", "netns", "del", ns, check=False)
    if topo is not None:
        plan = plan_world(lab, topo)
        targets = [paths.node_netns(n.name) for n in topo.nodes] + ([plan.router_netns] if plan.router_netns else [])
        for target in targets:
            if os.path.exists(f"{NETNS_DIR}/{target}"):
                for prefix in WORLD_PREFIXES:
                    _ip(target, "route", "del", prefix, "via", plan.ip, check=False)


# -- the world's HTTP server ---------------------------------------------------------------------


def caller_response(path: str, client_ip: str, host: str) -> tuple[str, str]:
    """(content type, body) the world's web servers answer: the caller's IP, as ipinfo.io does."""
    if path.rstrip("/") == "/ip":
        return "text/plain; charset=utf-8", client_ip + "\n"
    return "application/json", json.dumps({"ip": client_ip, "host": host.split(":")[0]}) + "\n"


def serve_http(port: int) -> None:
    from membrane.lab.workloads import httpcore, runtime

    def handle(req: httpcore.Request) -> httpcore.Response:
        ctype, body = caller_response(req.path, req.client[0], req.host)
        return httpcore.text(body, content_type=ctype)

    listener = httpcore.open_tcp_listener(port, "0.0.0.0")
    runtime.run_until_terminated([lambda: httpcore.serve(listener, handle, server="membrane-world")])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="membrane.lab.world")
    sub = p.add_subparsers(dest="cmd", required=True)
    http = sub.add_parser("serve-http", help="the world's web server (run inside the world namespace)")
    http.add_argument("--port", type=int, default=HTTP_PORT)
    args = p.parse_args(argv)
    if args.cmd == "serve-http":
        serve_http(args.port)


if __name__ == "__main__":
    main()
