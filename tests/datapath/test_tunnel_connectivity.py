"""Tunnel routing between two real nodes: pods on different nodes talk through each node's
collect-metadata VXLAN device (from_container encapsulates, bpf/overlay.c delivers), with no
route to any pod CIDR in either node and IP forwarding off; the underlay carries only UDP 8472
between the node IPs; the receiving node's policy uses the identity from the VNI."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import pytest

from membrane.datapath.linux import links
from membrane.datapath.linux.netns import run_in_netns
from membrane.datapath.loader import NodeDatapath
from membrane.datapath.maps.endpoints import POLICY_INGRESS_ENFORCED
from membrane.datapath.maps.metrics import METRIC_INGRESS
from membrane.datapath.maps.policy import DIR_INGRESS, PolicyRule
from membrane.datapath.overlay import Overlay
from membrane.model.datapath_codes import DROP_POLICY
from tests.datapath.netlab import NodeLab, Pod, ping, ping_counts

pytestmark = pytest.mark.root

NODE_A, NODE_B = "192.168.77.1", "192.168.77.2"
CIDR_A, CIDR_B = "10.200.0.0/24", "10.201.0.0/24"
ID_A, ID_B = 1001, 1002
VXLAN_PORT = 8472
ETH_P_ALL, ETH_P_IP = 0x0003, 0x0800


def ip(*args: str) -> None:
    import subprocess

    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Tunnel:
    a: NodeLab
    b: NodeLab
    pod_a: Pod
    pod_b: Pod
    underlay: str
    overlays: tuple[Overlay, Overlay]


def _node_overlay(node: NodeLab, pin_dir: str, own_ip: str, peer_cidr: str, peer_ip: str) -> Overlay:
    ifindex = links.ensure_vxlan("membrane_vxlan", VXLAN_PORT, netns=node.netns)
    overlay = Overlay(pin_dir)
    node.in_node(overlay.attach, ifindex)
    with overlay.tunnels() as tunnels:
        assert tunnels.sync({peer_cidr: peer_ip}) == (1, 0)
    return overlay


@pytest.fixture
def tunnel(node: NodeLab, make_netns: Callable[[str], str], pin_dir: str, lxc_object: str) -> Iterator[Tunnel]:
    pin_b = pin_dir.rsplit("/", 1)[0] + "/node-b"
    dp_b = NodeDatapath(pin_b, object_path=lxc_object)
    dp_b.load()
    b = NodeLab(lambda suffix: make_netns(f"b{suffix}"), dp_b)
    underlay = make_netns("ul")
    ip("-n", underlay, "link", "add", "br0", "type", "bridge")
    ip("-n", underlay, "link", "set", "br0", "up")
    for index, (netns, address) in enumerate(((node.netns, NODE_A), (b.netns, NODE_B))):
        port = f"p{index}"
        ip("-n", underlay, "link", "add", port, "type", "veth", "peer", "name", "eth1", "netns", netns)
        ip("-n", underlay, "link", "set", port, "master", "br0", "up")
        ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth1")
        ip("-n", netns, "link", "set", "eth1", "up")
        ip("-n", netns, "link", "set", "lo", "up")
    pod_a = node.add_pod("a", "10.200.0.10")
    pod_b = b.add_pod("b", "10.201.0.20")
    for lab, pod, identity in ((node, pod_a, ID_A), (b, pod_b, ID_B)):
        dp = lab.datapath
        dp.endpoints.update(pod.ip, replace(dp.endpoints.get(pod.ip), sec_identity=identity))
    overlays = (_node_overlay(node, pin_dir, NODE_A, CIDR_B, NODE_B), _node_overlay(b, pin_b, NODE_B, CIDR_A, NODE_A))
    try:
        yield Tunnel(node, b, pod_a, pod_b, underlay, overlays)
    finally:
        for overlay in overlays:
            overlay.close()
        dp_b.close()


class Capture:
    """Every frame crossing an underlay port (AF_PACKET in the underlay netns)."""

    def __init__(self, netns: str, port: str) -> None:
        def open_socket() -> socket.socket:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            sock.bind((port, 0))
            sock.setblocking(False)
            return sock

        self.sock = run_in_netns(netns, open_socket)

    def frames(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(65535))
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()


def _ipv4_summary(frame: bytes) -> tuple[str, str, int, int] | None:
    """(src, dst, protocol, UDP dport or 0) of an IPv4 unicast frame; None for anything else (ARP, multicast)."""
    if struct.unpack("!H", frame[12:14])[0] != ETH_P_IP:
        return None
    if frame[30] & 0xF0 == 0xE0:  # multicast control the kernel sends by itself (IGMP reports), not pods'
        return None
    ihl = (frame[14] & 0x0F) * 4
    proto = frame[23]
    dport = struct.unpack("!H", frame[14 + ihl + 2:14 + ihl + 4])[0] if proto == 17 else 0
    return socket.inet_ntoa(frame[26:30]), socket.inet_ntoa(frame[30:34]), proto, dport


def test_pods_on_two_nodes_talk_through_the_tunnel_only(tunnel: Tunnel) -> None:
    for lab in (tunnel.a, tunnel.b):  # nothing but the tunnel could carry it
        routes = lab.in_node(lambda: __import__("subprocess").run(["ip", "-4", "route"], capture_output=True,
                                                                   text=True).stdout)
        assert "10.200.0.0" not in routes and "10.201.0.0" not in routes, routes
    capture = Capture(tunnel.underlay, "p0")
    try:
        sent, received = ping_counts(ping(tunnel.pod_a, tunnel.pod_b.ip, count=3).stdout)
        assert (sent, received) == (3, 3)
        time.sleep(0.2)
        seen = [s for s in (_ipv4_summary(f) for f in capture.frames()) if s is not None]
    finally:
        capture.close()
    assert len(seen) >= 6  # 3 requests, 3 replies
    assert all((s[2], s[3]) == (17, VXLAN_PORT) and {s[0], s[1]} == {NODE_A, NODE_B} for s in seen), seen


def test_the_receiving_node_uses_the_identity_from_the_vni(tunnel: Tunnel) -> None:
    dp = tunnel.b.datapath
    record = dp.endpoints.get(tunnel.pod_b.ip)
    dp.endpoints.update(tunnel.pod_b.ip, replace(record, flags=POLICY_INGRESS_ENFORCED))
    # Node B's ipcache knows nothing of pod A (it would be world): only the VNI names it.
    dp.policy.sync([PolicyRule(ep_id=record.ep_id, direction=DIR_INGRESS, identity=ID_A, protocol=1, port=8)])
    assert ping_counts(ping(tunnel.pod_a, tunnel.pod_b.ip, count=2).stdout) == (2, 2)
    before = dp.metrics().get((DROP_POLICY, METRIC_INGRESS), (0, 0))[0]
    dp.policy.sync([PolicyRule(ep_id=record.ep_id, direction=DIR_INGRESS, identity=ID_A + 7, protocol=1, port=8)])
    assert ping_counts(ping(tunnel.pod_a, tunnel.pod_b.ip, count=2, wait=1).stdout)[1] == 0
    assert dp.metrics().get((DROP_POLICY, METRIC_INGRESS), (0, 0))[0] > before  # 133


def test_detach_switches_encapsulation_off(tunnel: Tunnel) -> None:
    ifindex = run_in_netns(tunnel.a.netns, socket.if_nametoindex, "membrane_vxlan")
    overlay = tunnel.overlays[0]
    assert tunnel.a.in_node(overlay.attached, ifindex) is not None
    assert tunnel.a.in_node(overlay.detach, ifindex)
    assert tunnel.a.in_node(overlay.attached, ifindex) is None
    assert ping_counts(ping(tunnel.pod_a, tunnel.pod_b.ip, count=2, wait=1).stdout)[1] == 0
