"""The node device with real sockets: an outside client, a node whose eth1 runs bpf/host.c with a
local pod backend, and a second node holding a remote backend, all on one bridged underlay.

    client (192.168.10.200) ─┐
    node   (192.168.10.100) ─┼─ br0 (underlay netns)      node: pods 10.200.0.0/24, eth1 + host.c
    node2  (192.168.10.101) ─┘                             node2: "pod" 10.201.0.7 (remote backend)

The client has no route to any pod address: whatever reaches it came back through the node's
translations. Every test runs with the kernel routing pod traffic (legacy) and with eBPF host
routing (bpf/lib/fib.h), where pod traffic never meets the node's IP forwarding.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import pytest

from membrane.datapath.bpf.syscalls import map_update
from membrane.datapath.linux import sysctl
from membrane.datapath.linux.netns import run_in_netns
from membrane.datapath.maps.endpoints import POLICY_INGRESS_ENFORCED
from membrane.datapath.maps.events import ConfigMap, DatapathEvent
from membrane.datapath.maps.ipcache import IpcacheEntry
from membrane.datapath.maps.lb import LB_F_ETP_LOCAL, Backend, Frontend
from membrane.datapath.maps.metrics import METRIC_INGRESS
from membrane.datapath.maps.nat import NAT_DIR_REV_DNAT, NAT_F_NODEPORT, NatEntry, NatKey
from membrane.datapath.monitor import EventMonitor
from membrane.model.datapath_codes import DROP_POLICY, TRACE_TO_NETWORK
from membrane.model.monitor_aggregation import LOW, MonitorAggregation
from tests.datapath.netlab import NodeLab, Pod, ping, ping_counts

pytestmark = pytest.mark.root

NODE_IP, NODE2_IP, CLIENT_IP = "192.168.10.100", "192.168.10.101", "192.168.10.200"
REMOTE_IP, REMOTE_PORT = "10.201.0.7", 9090
POD_PORT, NODEPORT = 8080, 30080
CLIENT_PORT = 7070  # a server on the outside client, for masquerade
IDENTITY_REMOTE_NODE = 6
TIMEOUT = 2.0


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class WhoServer:
    """TCP on (address, port) in a netns: answers every connection with '<name> <peer ip>'."""

    def __init__(self, netns: str, address: str, port: int, name: str) -> None:
        self.name = name

        def listen() -> socket.socket:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen(16)
            return sock

        self.sock = run_in_netns(netns, listen)
        self.sock.settimeout(0.2)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, peer = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                try:
                    conn.sendall(f"{self.name} {peer[0]}\n".encode())
                except OSError:
                    pass

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.sock.close()


def ask(netns: str, address: str, port: int) -> tuple[str, str, tuple[str, int]]:
    """Connect from netns; (server name, the peer address it saw, our peer address)."""

    def connect() -> tuple[bytes, tuple[str, int]]:
        with socket.create_connection((address, port), TIMEOUT) as sock:
            sock.settimeout(TIMEOUT)
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
            return data, sock.getpeername()

    data, peer = run_in_netns(netns, connect)
    name, seen = data.decode().split()
    return name, seen, peer


@dataclass
class Cluster:
    node: NodeLab
    pod: Pod
    client: str
    node2: str
    host_routing: bool


@pytest.fixture(params=[False, True], ids=["legacy-routing", "bpf-host-routing"])
def cluster(request: pytest.FixtureRequest, node: NodeLab, make_netns: Callable[[str], str]) -> Iterator[Cluster]:
    underlay, client, node2 = make_netns("ul"), make_netns("client"), make_netns("node2")
    ip("-n", underlay, "link", "add", "br0", "type", "bridge")
    ip("-n", underlay, "link", "set", "br0", "up")
    for index, (netns, address) in enumerate(((node.netns, NODE_IP), (client, CLIENT_IP), (node2, NODE2_IP))):
        port = f"p{index}"
        ip("-n", underlay, "link", "add", port, "type", "veth", "peer", "name", "eth1", "netns", netns)
        ip("-n", underlay, "link", "set", port, "master", "br0", "up")
        ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth1")
        ip("-n", netns, "link", "set", "eth1", "up")
        ip("-n", netns, "link", "set", "lo", "up")
    ip("-n", node2, "addr", "add", f"{REMOTE_IP}/32", "dev", "lo")
    ip("-n", node.netns, "route", "add", "10.201.0.0/24", "via", NODE2_IP)
    sysctl.set_sysctl("net.ipv4.ip_forward", 1, netns=node.netns)  # pod traffic to the outside

    pod = node.add_pod("b", "10.200.0.11")
    ifindex = run_in_netns(node.netns, socket.if_nametoindex, "eth1")
    node.in_node(node.datapath.attach_host_device, ifindex, NODE_IP, "10.0.0.0/8", True, request.param)
    assert all(node.in_node(node.datapath.host_attached, ifindex).values())
    servers = [WhoServer(pod.netns, pod.ip, POD_PORT, "local"), WhoServer(node2, REMOTE_IP, REMOTE_PORT, "remote"),
               WhoServer(client, CLIENT_IP, CLIENT_PORT, "outside")]
    yield Cluster(node, pod, client, node2, request.param)
    for server in servers:
        server.close()
    assert node.in_node(node.datapath.detach_host_device, ifindex)


def service(cluster: Cluster, backend: Backend, flags: int = 0) -> None:
    cluster.node.datapath.lb.upsert_service(Frontend(NODE_IP, NODEPORT), [backend], rev_nat_index=1, flags=flags)


def test_nodeport_to_a_local_backend(cluster: Cluster) -> None:
    service(cluster, Backend(1, cluster.pod.ip, POD_PORT))
    for _ in range(3):
        name, seen, peer = ask(cluster.client, NODE_IP, NODEPORT)
        assert (name, peer) == ("local", (NODE_IP, NODEPORT))  # replies come from node IP:nodePort
        assert seen == CLIENT_IP


def test_nodeport_to_a_remote_backend_is_snated(cluster: Cluster) -> None:
    service(cluster, Backend(2, REMOTE_IP, REMOTE_PORT))
    for _ in range(3):
        name, seen, peer = ask(cluster.client, NODE_IP, NODEPORT)
        assert (name, peer) == ("remote", (NODE_IP, NODEPORT))
        assert seen == NODE_IP  # SNAT: the backend answers the node, which answers the client


def test_etp_local_keeps_the_client_address(cluster: Cluster) -> None:
    service(cluster, Backend(1, cluster.pod.ip, POD_PORT), flags=LB_F_ETP_LOCAL)
    name, seen, peer = ask(cluster.client, NODE_IP, NODEPORT)
    assert (name, seen, peer) == ("local", CLIENT_IP, (NODE_IP, NODEPORT))


def test_etp_local_without_a_local_backend_does_not_answer(cluster: Cluster) -> None:
    service(cluster, Backend(2, REMOTE_IP, REMOTE_PORT), flags=LB_F_ETP_LOCAL)
    with pytest.raises(TimeoutError):
        ask(cluster.client, NODE_IP, NODEPORT)


def test_masquerade_pod_to_outside(cluster: Cluster) -> None:
    name, seen, peer = ask(cluster.pod.netns, CLIENT_IP, CLIENT_PORT)
    assert (name, peer) == ("outside", (CLIENT_IP, CLIENT_PORT))
    assert seen == NODE_IP  # the outside sees the node, and its replies found the pod
    sent, received = ping_counts(ping(cluster.pod, CLIENT_IP, count=3).stdout)
    assert sent == received == 3


def test_traffic_to_other_nodes_is_not_masqueraded(cluster: Cluster) -> None:
    ip("-n", cluster.node2, "route", "add", "10.200.0.0/24", "via", NODE_IP)
    name, seen, _peer = ask(cluster.pod.netns, REMOTE_IP, REMOTE_PORT)  # inside ipv4NativeRoutingCIDR
    assert (name, seen) == ("remote", cluster.pod.ip)


def _forwarded_by_kernel(netns: str) -> int:
    """The node's IP forwarding counter (/proc/net/snmp Ip: ForwDatagrams)."""

    def read() -> int:
        with open("/proc/thread-self/net/snmp") as snmp:  # this thread is in the netns
            header, values = [line.split() for line in snmp if line.startswith("Ip:")][:2]
        return int(values[header.index("ForwDatagrams")])

    return run_in_netns(netns, read)


def test_host_routing_keeps_pod_traffic_off_the_kernels_forwarding(cluster: Cluster) -> None:
    """Across nodes both ways (pod -> remote, remote -> pod) and to the outside (masqueraded):
    with host routing the node's kernel forwards none of it; with legacy routing it forwards it
    all (the control that shows the counter sees this traffic)."""
    ip("-n", cluster.node2, "route", "add", "10.200.0.0/24", "via", NODE_IP)
    # node2 is a remote node (its address is not masqueraded); what the agent's ipcache would say
    cluster.node.datapath.ipcache.update(f"{NODE2_IP}/32", IpcacheEntry(IDENTITY_REMOTE_NODE))
    before = _forwarded_by_kernel(cluster.node.netns)
    for _ in range(5):
        assert ask(cluster.pod.netns, REMOTE_IP, REMOTE_PORT)[:2] == ("remote", cluster.pod.ip)
        assert ask(cluster.node2, cluster.pod.ip, POD_PORT)[:2] == ("local", NODE2_IP)
        assert ask(cluster.pod.netns, CLIENT_IP, CLIENT_PORT)[:2] == ("outside", NODE_IP)
    forwarded = _forwarded_by_kernel(cluster.node.netns) - before
    if cluster.host_routing:
        assert forwarded == 0
    else:
        assert forwarded >= 5 * 3 * 3  # every SYN, ACK and data segment of 15 connections, at least


def _to_network_of_one_connection(cluster: Cluster) -> list[DatapathEvent]:
    received: list[DatapathEvent] = []
    monitor = EventMonitor(cluster.node.datapath.pin_dir, received.append)
    monitor.start()
    try:
        assert ask(cluster.pod.netns, REMOTE_IP, REMOTE_PORT)[:2] == ("remote", cluster.pod.ip)
    finally:
        monitor.stop()
    return [e for e in received if e.observation_point == TRACE_TO_NETWORK]


def test_a_pod_connection_to_another_node_is_to_network_only_below_medium(cluster: Cluster) -> None:
    """At the default (medium) no to-network trace for a pod's packet leaving the node, as Cilium:
    cil_to_netdev traces with monitor 0 unless its host firewall's conntrack reports, and bpf_lxc not
    at all after its FIB redirect. At low every packet leaving is to-network, once: from_container's
    with host routing, to_netdev's with the kernel routing it."""
    ip("-n", cluster.node2, "route", "add", "10.200.0.0/24", "via", NODE_IP)
    cluster.node.datapath.ipcache.update(f"{NODE2_IP}/32", IpcacheEntry(IDENTITY_REMOTE_NODE))
    assert _to_network_of_one_connection(cluster) == []
    with ConfigMap.open(cluster.node.datapath.pin_dir) as config:
        config.set_aggregation(MonitorAggregation(LOW))
    leaving = _to_network_of_one_connection(cluster)
    assert len(leaving) >= 3, leaving  # SYN, the handshake's ACK, the FIN at least
    assert all(e.ep_id == (1 if cluster.host_routing else 0) for e in leaving), leaving
    packets = [e.packet[14:] for e in leaving]  # from the IP header: one trace per packet, none twice
    assert len(set(packets)) == len(packets), leaving


def test_a_packet_too_big_for_the_path_is_left_to_the_kernel(cluster: Cluster) -> None:
    """The FIB says 'fragmentation needed' (DF set, larger than eth1's MTU): the kernel answers
    with ICMP frag-needed, as without host routing."""
    ip("-n", cluster.node2, "route", "add", "10.200.0.0/24", "via", NODE_IP)
    ip("-n", cluster.node.netns, "link", "set", "eth1", "mtu", "1200")
    try:
        out = subprocess.run(["ip", "netns", "exec", cluster.pod.netns, "ping", "-n", "-c", "1", "-W", "2",
                              "-M", "do", "-s", "1300", REMOTE_IP], capture_output=True, text=True, timeout=15)
        assert "mtu = 1200" in (out.stdout + out.stderr).lower() or "frag needed" in (out.stdout + out.stderr).lower(), \
            out.stdout + out.stderr
        sent, received = ping_counts(ping(cluster.pod, REMOTE_IP, count=2).stdout)
        assert sent == received == 2  # a packet that fits still goes through
    finally:
        ip("-n", cluster.node.netns, "link", "set", "eth1", "mtu", "1500")


def _tx_packets(netns: str, dev: str) -> int:
    out = subprocess.run(["ip", "-n", netns, "-j", "-s", "link", "show", "dev", dev], check=True,
                         capture_output=True, text=True).stdout
    return int(json.loads(out)[0]["stats64"]["tx"]["packets"])


def test_same_node_delivery_skips_the_lxc_queue_with_host_routing(cluster: Cluster) -> None:
    """Pod to pod on one node: with host routing from_container runs the destination's ingress
    and redirects into its namespace (bpf_redirect_peer), so nothing is sent through either lxc
    device; legacy routing sends every packet out of the destination's lxc."""
    other = cluster.node.add_pod("c", "10.200.0.12")
    server = WhoServer(other.netns, other.ip, POD_PORT, "other")
    try:
        assert ask(cluster.pod.netns, other.ip, POD_PORT)[:2] == ("other", cluster.pod.ip)  # neighbours warm
        before = [_tx_packets(cluster.node.netns, p.lxc) for p in (cluster.pod, other)]
        for _ in range(10):
            assert ask(cluster.pod.netns, other.ip, POD_PORT)[:2] == ("other", cluster.pod.ip)
        sent = sum(_tx_packets(cluster.node.netns, p.lxc) for p in (cluster.pod, other)) - sum(before)
        if cluster.host_routing:
            assert sent <= 2  # nothing of 10 connections; room for a stray neighbour probe
        else:
            assert sent >= 10 * 4
    finally:
        server.close()


@pytest.mark.parametrize("sender", ["same-node", "other-node"])
def test_ingress_policy_holds_on_every_delivery_path(cluster: Cluster, sender: str) -> None:
    """The destination's ingress policy decides whichever way the packet comes in: through its
    lxc device (legacy) or straight into its namespace (host routing, same node or from eth1)."""
    ip("-n", cluster.node2, "route", "add", "10.200.0.0/24", "via", NODE_IP)
    cluster.node.datapath.ipcache.update(f"{NODE2_IP}/32", IpcacheEntry(IDENTITY_REMOTE_NODE))
    client = cluster.node.add_pod("c", "10.200.0.12").netns if sender == "same-node" else cluster.node2
    assert ask(client, cluster.pod.ip, POD_PORT)[0] == "local"
    record = cluster.node.datapath.endpoints.get(cluster.pod.ip)
    assert record is not None
    before = cluster.node.datapath.metrics().get((DROP_POLICY, METRIC_INGRESS))
    cluster.node.datapath.endpoints.update(cluster.pod.ip, replace(record, flags=POLICY_INGRESS_ENFORCED))
    with pytest.raises(TimeoutError):
        ask(client, cluster.pod.ip, POD_PORT)
    after = cluster.node.datapath.metrics().get((DROP_POLICY, METRIC_INGRESS))
    assert after is not None and after.packets > (before.packets if before else 0)


def _net_addr(address: str) -> int:
    return int.from_bytes(socket.inet_aton(address), sys.byteorder)


def _plant_rev_dnat(cluster: Cluster, sport: int) -> None:
    """A NAT_DIR_REV_DNAT entry (NodePort's, host.c) for the pod's own connection to the remote
    backend from `sport`: to_netdev would give its packets NODE_IP:NODEPORT as source, if it looked."""
    key = NatKey(saddr=_net_addr(cluster.pod.ip), daddr=_net_addr(REMOTE_IP), sport=socket.htons(sport),
                 dport=socket.htons(REMOTE_PORT), protocol=socket.IPPROTO_TCP, direction=NAT_DIR_REV_DNAT)
    value = NatEntry(addr=_net_addr(NODE_IP), port=socket.htons(NODEPORT), flags=NAT_F_NODEPORT)
    map_update(cluster.node.datapath.nat.fd, key, value)


def test_host_routed_packets_of_a_pod_connection_skip_to_netdev(cluster: Cluster) -> None:
    """With host routing, from_container marks the packets of a connection its pod started
    (MARK_MAGIC_NETDEV_PASS, bpf/lib/netdev_pass.h), the mark survives the redirect to eth1 and
    to_netdev returns at once: a NodePort reverse-DNAT entry planted for that very tuple is not
    applied. The kernel routing it, to_netdev looks the entry up and rewrites the source, so the
    remote server answers the node's NodePort and the connection never completes (the control)."""
    ip("-n", cluster.node2, "route", "add", "10.200.0.0/24", "via", NODE_IP)
    cluster.node.datapath.ipcache.update(f"{NODE2_IP}/32", IpcacheEntry(IDENTITY_REMOTE_NODE))
    # Neighbours and the fresh bridge warm first: a packet lost there is not what this test is about.
    for attempt in range(3):
        try:
            assert ask(cluster.pod.netns, REMOTE_IP, REMOTE_PORT)[:2] == ("remote", cluster.pod.ip)
            break
        except TimeoutError:
            if attempt == 2:
                raise
    sport = 41234
    _plant_rev_dnat(cluster, sport)

    def connect() -> bytes:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((cluster.pod.ip, sport))
            sock.settimeout(TIMEOUT)
            sock.connect((REMOTE_IP, REMOTE_PORT))
            return sock.recv(256)

    if cluster.host_routing:
        assert run_in_netns(cluster.pod.netns, connect).decode().split() == ["remote", cluster.pod.ip]
    else:
        with pytest.raises(OSError):
            run_in_netns(cluster.pod.netns, connect)


def test_nodeport_replies_to_a_client_inside_the_native_cidr_keep_the_frontend(cluster: Cluster) -> None:
    """A NodePort client with a pod-network address (node2's 10.201.0.7, inside the native CIDR, so
    never masqueraded): its local backend's replies are host-routed, and from_container must find
    their NAT_DIR_REV_DNAT entry and leave them to to_netdev (bpf/lib/netdev_pass.h), which gives
    them the frontend as source; marked, they would come from the pod and the client would not
    take them."""
    service(cluster, Backend(1, cluster.pod.ip, POD_PORT))

    def connect() -> tuple[bytes, tuple[str, int]]:
        with socket.create_connection((NODE_IP, NODEPORT), TIMEOUT, source_address=(REMOTE_IP, 0)) as sock:
            sock.settimeout(TIMEOUT)
            return sock.recv(256), sock.getpeername()

    for attempt in range(3):  # the first may be lost while the fresh bridge and neighbours warm
        try:
            data, peer = run_in_netns(cluster.node2, connect)
            break
        except TimeoutError:
            if attempt == 2:
                raise
    assert data.decode().split() == ["local", REMOTE_IP] and peer == (NODE_IP, NODEPORT)
    for _ in range(3):
        data, peer = run_in_netns(cluster.node2, connect)
        assert data.decode().split() == ["local", REMOTE_IP] and peer == (NODE_IP, NODEPORT)
