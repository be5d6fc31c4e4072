"""A one-node test topology: a node netns with the router IP, and pods attached to the datapath."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from membrane.datapath.linux import links, routes, sysctl
from membrane.datapath.linux.links import VethInfo
from membrane.datapath.linux.netns import run_in_netns
from membrane.datapath.loader import NodeDatapath
from membrane.datapath.maps.endpoints import EndpointRecord

POD_CIDR = "10.200.0.0/24"
ROUTER_IP = "10.200.0.1"
HOST_DEVICE = "membrane_host"


@dataclass(frozen=True)
class Pod:
    name: str
    netns: str
    ip: str
    lxc: str
    veth: VethInfo

    @property
    def ifindex(self) -> int:
        return self.veth.host_ifindex


class NodeLab:
    def __init__(self, make_netns: Callable[[str], str], datapath: NodeDatapath) -> None:
        self.datapath = datapath
        self.netns = make_netns("node")
        self._make_netns = make_netns
        self.pods: list[Pod] = []
        sysctl.set_sysctl("net.ipv4.ip_forward", 0, netns=self.netns)
        links.ensure_dummy(HOST_DEVICE, f"{ROUTER_IP}/32", netns=self.netns)

    def add_pod(self, name: str, ip: str) -> Pod:
        netns = self._make_netns(name)
        lxc = f"lxc{name[:8]}"
        veth = run_in_netns(self.netns, links.create_pod_veth, lxc, netns)
        sysctl.set_sysctl(f"net.ipv4.conf.{lxc}.arp_ignore", 8, netns=self.netns)
        links.configure_pod_side(netns, "eth0", ip, ROUTER_IP)
        routes.replace_endpoint_route(ip, lxc, netns=self.netns)
        run_in_netns(self.netns, self.datapath.attach_endpoint, veth.host_ifindex)
        self.datapath.endpoints.update(
            ip, EndpointRecord(ifindex=veth.host_ifindex, ep_id=len(self.pods) + 1, pod_mac=veth.pod_mac,
                               lxc_mac=veth.host_mac)
        )
        pod = Pod(name, netns, ip, lxc, veth)
        self.pods.append(pod)
        return pod

    def in_node(self, fn: Callable, *args: object):
        return run_in_netns(self.netns, fn, *args)


def ping(pod: Pod, dst: str, count: int = 3, interval: float = 0.1, wait: float = 2) -> subprocess.CompletedProcess:
    cmd = ["ip", "netns", "exec", pod.netns, "ping", "-n", "-c", str(count), "-i", str(interval), "-W", str(wait), dst]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=count * interval + wait + 10)


def ping_counts(output: str) -> tuple[int, int]:
    """(transmitted, received) from ping's summary line."""
    match = re.search(r"(\d+) packets transmitted, (\d+) received", output)
    assert match, f"no ping summary in: {output!r}"
    return int(match.group(1)), int(match.group(2))


def neighbour_mac(netns: str, ip: str) -> str | None:
    out = subprocess.run(["ip", "-j", "-n", netns, "neigh", "show", ip], capture_output=True, text=True, check=True)
    entries = json.loads(out.stdout or "[]")
    return entries[0].get("lladdr") if entries else None
