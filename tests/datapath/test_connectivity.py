"""Pods on one node reach each other through from_container's redirect (real namespaces)."""

from __future__ import annotations

import socket
import sys
import time

import pytest

from membrane.datapath.bpf.syscalls import close_fd, obj_get, prog_info
from membrane.datapath.linux.netns import run_in_netns
from membrane.datapath.loader import FROM_CONTAINER, PROGS_SUBDIR, TO_CONTAINER, NodeDatapath
from membrane.datapath.maps.metrics import METRIC_EGRESS, METRIC_INGRESS
from membrane.model.datapath_codes import REASON_FORWARDED
from tests.datapath.netlab import ROUTER_IP, NodeLab, neighbour_mac, ping, ping_counts

pytestmark = pytest.mark.root

ECHO_SERVER = """
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(1)
print("ready", flush=True)
conn, _ = srv.accept()
with conn:
    while data := conn.recv(65536):
        conn.sendall(data)
"""


def _forwarded(node: NodeLab, direction: int) -> int:
    return node.datapath.metrics().get((REASON_FORWARDED, direction), (0, 0))[0]


def test_pods_ping_through_the_bpf_redirect(node: NodeLab) -> None:
    a = node.add_pod("a", "10.200.0.10")
    b = node.add_pod("b", "10.200.0.11")
    egress_before, ingress_before = _forwarded(node, METRIC_EGRESS), _forwarded(node, METRIC_INGRESS)

    result = ping(a, b.ip, count=5, interval=0.05)

    assert result.returncode == 0, result.stdout + result.stderr
    assert ping_counts(result.stdout) == (5, 5)
    assert "ttl=63" in result.stdout  # one routed hop: the redirect decremented the TTL
    # 5 requests from a and 5 replies from b left their pods; as many entered the other pod.
    assert _forwarded(node, METRIC_EGRESS) - egress_before >= 10
    assert _forwarded(node, METRIC_INGRESS) - ingress_before >= 10
    # The node kernel does not answer ARP on the veths (arp_ignore=8): the BPF responder did.
    assert neighbour_mac(a.netns, ROUTER_IP) == a.veth.host_mac
    assert neighbour_mac(b.netns, ROUTER_IP) == b.veth.host_mac


def test_without_the_programs_pods_cannot_reach_each_other(node: NodeLab) -> None:
    """Negative control for the test above: ip_forward=0 really blocks the kernel path."""
    a = node.add_pod("a", "10.200.0.10")
    b = node.add_pod("b", "10.200.0.11")
    assert ping(a, b.ip, count=1).returncode == 0

    assert node.in_node(node.datapath.detach_endpoint, a.ifindex) is True

    result = ping(a, b.ip, count=2, interval=0.2, wait=1)
    assert ping_counts(result.stdout)[1] == 0
    assert node.in_node(node.datapath.attached, a.ifindex) == {FROM_CONTAINER: None, TO_CONTAINER: None}
    assert node.in_node(node.datapath.detach_endpoint, a.ifindex) is False


def test_tcp_between_pods(node: NodeLab, spawn) -> None:
    a = node.add_pod("a", "10.200.0.10")
    b = node.add_pod("b", "10.200.0.11")
    server = spawn(["ip", "netns", "exec", b.netns, sys.executable, "-c", ECHO_SERVER, b.ip, "8080"])
    assert server.stdout.readline().strip() == "ready", server.stderr.read() if server.poll() is not None else ""
    payload = bytes(range(256)) * 4096  # 1 MiB: large segments (GSO) through the redirect

    def exchange() -> bytes:
        with socket.create_connection((b.ip, 8080), timeout=10) as conn:
            conn.sendall(payload)
            conn.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)

    assert run_in_netns(a.netns, exchange) == payload
    server.wait(timeout=10)
    assert server.returncode == 0


def test_reloading_replaces_programs_without_losing_packets(node: NodeLab, spawn, pin_dir: str,
                                                            lxc_object: str) -> None:
    a = node.add_pod("a", "10.200.0.10")
    b = node.add_pod("b", "10.200.0.11")
    count = 400
    pinger = spawn(["ip", "netns", "exec", a.netns, "ping", "-n", "-c", str(count), "-i", "0.01", "-W", "2", b.ip])
    time.sleep(0.5)

    loads: list[NodeDatapath] = []
    try:
        for _ in range(3):  # three agent restarts while traffic flows
            fresh = NodeDatapath(pin_dir, object_path=lxc_object)
            loads.append(fresh)
            fresh.load()
            assert node.in_node(fresh.reattach_all, [a.ifindex, b.ifindex]) == {}
            for pod in (a, b):
                assert node.in_node(fresh.attached, pod.ifindex) == fresh.program_ids
            time.sleep(0.6)
        out, err = pinger.communicate(timeout=30)
        newest = loads[-1]
        assert newest.program_ids != node.datapath.program_ids
        # The pinned programs are the newest ones.
        for name in (FROM_CONTAINER, TO_CONTAINER):
            fd = obj_get(f"{pin_dir}/{PROGS_SUBDIR}/{name}")
            try:
                assert prog_info(fd).id == newest.program_ids[name]
            finally:
                close_fd(fd)
    finally:
        for dp in loads:
            dp.close()
    assert ping_counts(out) == (count, count), out + err
