"""Socket-level load balancing (bpf/sock.c) on one node: real TCP/UDP sockets in pod namespaces,
translated at connect()/sendmsg() by programs attached at the cgroup-v2 root, gated on the
node's pod namespace cookies; the per-packet translation (lb.h) must not run for them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from membrane.datapath.linux.netns import run_in_netns
from membrane.datapath.maps.lb import LB_F_ITP_LOCAL, LB_F_TWO_SCOPES, SCOPE_INT, Frontend
from membrane.datapath.maps.metrics import METRIC_EGRESS
from membrane.datapath.sock_lb import SOCK_PROGRAMS, SocketLB, attached_links, cgroup2_root, netns_cookie
from tests.datapath.netlab import NodeLab
from tests.datapath.test_lb_connectivity import (
    CONNECT_TIMEOUT,
    DROP_NO_SERVICE,
    VIP,
    VPORT,
    Setup,
    connect,
)
from tests.datapath.test_lb_connectivity import setup as setup  # noqa: F401  (the fixture)

pytestmark = pytest.mark.root

CT_SERVICE = 3
CT_EGRESS = 2


@pytest.fixture
def socket_lb(setup: Setup) -> Iterator[SocketLB]:  # noqa: F811
    slb = SocketLB(setup.node.datapath.pin_dir)
    slb.attach()
    for pod in (setup.client, setup.b, setup.c):
        slb.add_endpoint(pod.netns, pod.ip)
    yield slb
    slb.close()
    slb.detach()


def _cgroup_prog_ids() -> set[int]:
    out = subprocess.run(["bpftool", "-j", "cgroup", "show", cgroup2_root()], capture_output=True, text=True,
                         check=True).stdout
    return {int(row["id"]) for row in json.loads(out.strip() or "[]")}


def _service_entries(node: NodeLab) -> list:
    return [r for r in node.datapath.conntrack.rows() if r.direction == CT_SERVICE]


def _udp_peer_in_kernel(sock: socket.socket, netns: str | None) -> str:
    """The socket's real destination, as /proc/net/udp has it (no getpeername hook in the way)."""
    port = sock.getsockname()[1]

    def read() -> str:
        with open("/proc/thread-self/net/udp") as table:
            for line in table.readlines()[1:]:
                local, remote = line.split()[1:3]
                if int(local.split(":")[1], 16) == port:
                    raw = bytes.fromhex(remote.split(":")[0])
                    return socket.inet_ntoa(raw[::-1])
        raise AssertionError(f"udp port {port} not in /proc/net/udp")

    return read() if netns is None else run_in_netns(netns, read)


def test_tcp_connect_is_translated_at_the_socket(setup: Setup, socket_lb: SocketLB) -> None:  # noqa: F811
    setup.service(setup.backends(setup.b, setup.c))
    seen = set()
    for _ in range(16):
        conn = connect(setup.client)
        with conn.sock:
            assert conn.sock.getpeername() == (VIP, VPORT)  # getpeername4 gives the frontend back
            assert conn.round_trip(b"x" * 500) == b"x" * 500
            seen.add(conn.backend)
    assert seen == {"b", "c"}
    # The per-packet path never saw a frontend: no CT_SERVICE entries, and the client's own
    # connections are tracked client -> backend, with nothing to reverse-translate.
    assert _service_entries(setup.node) == []
    egress = [r for r in setup.node.datapath.conntrack.rows()
              if r.direction == CT_EGRESS and r.saddr == setup.client.ip and r.protocol == 6]
    assert egress and {r.daddr for r in egress} <= {setup.b.ip, setup.c.ip}
    assert {(fe, fport) for _c, _b, _p, fe, fport in socket_lb.reverse_entries()} == {(VIP, VPORT)}


def test_udp_sendto_and_recvfrom_see_the_frontend(setup: Setup, socket_lb: SocketLB) -> None:  # noqa: F811
    setup.service(setup.backends(setup.b, setup.c, proto="UDP"), proto="UDP")

    def ask() -> tuple[bytes, tuple[str, int], str]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            sock.sendto(b"who", (VIP, VPORT))
            data, peer = sock.recvfrom(2048)
            return data, peer, ""

    for _ in range(4):
        data, peer, _ = run_in_netns(setup.client.netns, ask)
        assert data in (b"b", b"c")
        assert peer == (VIP, VPORT)  # recvmsg4 rewrote the reply's source
    assert _service_entries(setup.node) == []


def test_connected_udp_goes_to_a_backend_and_reports_the_frontend(setup: Setup, socket_lb: SocketLB) -> None:  # noqa: F811
    setup.service(setup.backends(setup.b, proto="UDP"), proto="UDP")

    def ask() -> tuple[bytes, tuple[str, int], str]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            sock.connect((VIP, VPORT))
            kernel_peer = _udp_peer_in_kernel(sock, None)
            sock.send(b"who")
            return sock.recv(2048), sock.getpeername(), kernel_peer

    data, peer, kernel_peer = run_in_netns(setup.client.netns, ask)
    assert (data, peer, kernel_peer) == (b"b", (VIP, VPORT), setup.b.ip)


def test_a_service_without_backends_is_refused_by_connect(setup: Setup, socket_lb: SocketLB) -> None:  # noqa: F811
    setup.service([])
    before = setup.node.datapath.metrics().get((DROP_NO_SERVICE, METRIC_EGRESS), (0, 0))[0]
    started = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        connect(setup.client)
    assert time.monotonic() - started < CONNECT_TIMEOUT / 2
    # refused at the socket: no packet reached from_container's reject
    assert setup.node.datapath.metrics().get((DROP_NO_SERVICE, METRIC_EGRESS), (0, 0))[0] == before


def test_client_ip_affinity_holds_per_pod(setup: Setup, socket_lb: SocketLB) -> None:  # noqa: F811
    setup.node.datapath.lb.upsert_service(Frontend(VIP, VPORT), setup.backends(setup.b, setup.c), rev_nat_index=1,
                                          affinity_timeout=60)
    backends = set()
    for _ in range(10):
        conn = connect(setup.client)
        with conn.sock:
            backends.add(conn.backend)
    assert len(backends) == 1


def test_a_removed_backend_gets_no_new_connections(setup: Setup, socket_lb: SocketLB) -> None:  # noqa: F811
    setup.service(setup.backends(setup.b, setup.c))
    setup.service(setup.backends(setup.c, terminating=(setup.b,)))
    for _ in range(8):
        conn = connect(setup.client)
        with conn.sock:
            assert conn.backend == "c"


def test_host_and_unregistered_namespaces_are_untouched(setup: Setup, socket_lb: SocketLB) -> None:  # noqa: F811
    setup.service(setup.backends(setup.b, proto="UDP"), proto="UDP")

    def kernel_peer() -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.connect((VIP, VPORT))
            except OSError:
                return "unroutable"  # not translated either: a backend would be routable
            return _udp_peer_in_kernel(sock, None)

    assert run_in_netns(setup.client.netns, kernel_peer) == setup.b.ip  # the control: a pod is translated
    assert netns_cookie() not in socket_lb.netns.items()
    assert kernel_peer() in (VIP, "unroutable")  # this (host) namespace
    assert setup.node.in_node(kernel_peer) in (VIP, "unroutable")  # the node's own namespace


def test_detach_removes_the_links_and_packets_take_the_per_packet_path(setup: Setup) -> None:  # noqa: F811
    slb = SocketLB(setup.node.datapath.pin_dir)
    slb.attach()
    slb.add_endpoint(setup.client.netns, setup.client.ip)
    ids = set(slb.program_ids.values())
    assert len(ids) == len(SOCK_PROGRAMS) and ids <= _cgroup_prog_ids()
    assert attached_links(setup.node.datapath.pin_dir) == sorted(name for name, _ in SOCK_PROGRAMS)
    assert slb.remove_endpoint(setup.client.ip) == 1
    slb.close()
    assert slb.detach()
    assert not os.path.exists(os.path.join(setup.node.datapath.pin_dir, "links"))
    deadline = time.monotonic() + 5  # a link is released once its last reference goes
    while ids & _cgroup_prog_ids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not ids & _cgroup_prog_ids()
    setup.service(setup.backends(setup.b))
    conn = connect(setup.client)
    with conn.sock:
        assert conn.backend == "b"
    assert _service_entries(setup.node)  # translated per packet again


def test_remove_pins_detaches_the_links(setup: Setup) -> None:  # noqa: F811
    from membrane.datapath.loader import remove_pins

    pin_dir = setup.node.datapath.pin_dir
    slb = SocketLB(pin_dir)
    slb.attach()
    ids = set(slb.program_ids.values())
    setup.node.datapath.close()
    remove_pins(pin_dir)
    deadline = time.monotonic() + 5
    while ids & _cgroup_prog_ids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not ids & _cgroup_prog_ids()



def test_maglev_services_pick_from_the_maglev_table(setup: Setup, socket_lb: SocketLB) -> None:  # noqa: F811
    backends = setup.backends(setup.b, setup.c)  # ids: b 1, c 2
    setup.node.datapath.lb.upsert_service(Frontend(VIP, VPORT), backends, rev_nat_index=1, algorithm="maglev",
                                          maglev_table=[2] * 7)  # every slot names c
    for _ in range(8):
        conn = connect(setup.client)
        with conn.sock:
            assert conn.backend == "c"
    assert _service_entries(setup.node) == []


def test_in_cluster_clients_use_the_internal_scope(setup: Setup, socket_lb: SocketLB) -> None:  # noqa: F811
    """internalTrafficPolicy=Local: the two-scope frontend's in-cluster entries (only b) win."""
    lb = setup.node.datapath.lb
    lb.upsert_service(Frontend(VIP, VPORT), setup.backends(setup.b, setup.c), rev_nat_index=1,
                      flags=LB_F_TWO_SCOPES)
    lb.upsert_service(Frontend(VIP, VPORT, scope=SCOPE_INT), setup.backends(setup.b), rev_nat_index=1,
                      flags=LB_F_TWO_SCOPES | LB_F_ITP_LOCAL)
    for _ in range(8):
        conn = connect(setup.client)
        with conn.sock:
            assert conn.backend == "b"
