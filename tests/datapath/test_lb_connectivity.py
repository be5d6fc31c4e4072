"""Pods reaching a service VIP on one node: real TCP/UDP sockets through the per-packet load
balancer (bpf/lib/lb.h), backends being pods of the same node."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from membrane.datapath.linux.netns import run_in_netns
from membrane.datapath.maps.endpoints import POLICY_EGRESS_ENFORCED
from membrane.datapath.maps.ipcache import IpcacheEntry
from membrane.datapath.maps.lb import Backend, Frontend
from membrane.datapath.maps.metrics import METRIC_EGRESS
from membrane.datapath.maps.policy import DIR_EGRESS, PolicyRule
from membrane.model.datapath_codes import DROP_POLICY
from tests.datapath.netlab import NodeLab, Pod

pytestmark = pytest.mark.root

VIP, VPORT, PORT = "10.96.0.50", 80, 8080
DROP_NO_SERVICE = 158
CONNECT_TIMEOUT = 1.0
ID_CLIENT, ID_B, ID_C = 2001, 2002, 2003


class NameServer:
    """TCP and UDP on PORT in a pod: TCP says the pod's name first, then echoes; UDP answers
    every datagram with the name."""

    def __init__(self, pod: Pod) -> None:
        self.name = pod.name.encode()

        def listen() -> tuple[socket.socket, socket.socket]:
            tcp = socket.socket()
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((pod.ip, PORT))
            tcp.listen(64)
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((pod.ip, PORT))
            return tcp, udp

        self.tcp, self.udp = run_in_netns(pod.netns, listen)
        for sock in (self.tcp, self.udp):
            sock.settimeout(0.2)
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=fn, daemon=True) for fn in (self._accept, self._datagrams)]
        for thread in self.threads:
            thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.tcp.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        with conn:
            try:
                conn.sendall(self.name + b"\n")
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass

    def _datagrams(self) -> None:
        while not self.stopping.is_set():
            try:
                _data, peer = self.udp.recvfrom(2048)
                self.udp.sendto(self.name, peer)
            except (TimeoutError, OSError):
                continue

    def close(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=5)
        self.tcp.close()
        self.udp.close()


@dataclass
class Conn:
    sock: socket.socket
    backend: str  # the name the server gave

    def round_trip(self, payload: bytes) -> bytes:
        self.sock.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def connect(pod: Pod, ip: str = VIP, port: int = VPORT) -> Conn:
    sock = run_in_netns(pod.netns, socket.create_connection, (ip, port), CONNECT_TIMEOUT)
    sock.settimeout(5)
    name = b""
    while not name.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        name += chunk
    return Conn(sock, name.decode().strip())


@dataclass
class Setup:
    node: NodeLab
    client: Pod
    b: Pod
    c: Pod

    def backends(self, *pods: Pod, terminating: tuple[Pod, ...] = (), proto: str = "TCP") -> list[Backend]:
        ids = {self.b.name: 1, self.c.name: 2}
        return [Backend(ids[p.name], p.ip, PORT, proto, terminating=p in terminating) for p in (*pods, *terminating)]

    def service(self, backends: list[Backend], proto: str = "TCP") -> None:
        self.node.datapath.lb.upsert_service(Frontend(VIP, VPORT, proto), backends, rev_nat_index=1)


@pytest.fixture
def setup(node: NodeLab) -> Iterator[Setup]:
    client = node.add_pod("client", "10.200.0.10")
    b = node.add_pod("b", "10.200.0.11")
    c = node.add_pod("c", "10.200.0.12")
    dp = node.datapath
    for pod, identity in ((client, ID_CLIENT), (b, ID_B), (c, ID_C)):
        dp.ipcache.update(f"{pod.ip}/32", IpcacheEntry(identity))
        dp.endpoints.update(pod.ip, replace(dp.endpoints.get(pod.ip), sec_identity=identity))
    servers = [NameServer(b), NameServer(c)]
    yield Setup(node, client, b, c)
    for server in servers:
        server.close()


def _drops(node: NodeLab, reason: int) -> int:
    return node.datapath.metrics().get((reason, METRIC_EGRESS), (0, 0))[0]


def test_the_client_talks_to_the_vip_and_reaches_both_backends(setup: Setup) -> None:
    setup.service(setup.backends(setup.b, setup.c))
    seen = set()
    for _ in range(24):
        conn = connect(setup.client)
        with conn.sock:
            assert conn.sock.getpeername() == (VIP, VPORT)  # answers come from the VIP
            assert conn.round_trip(b"ping" * 100) == b"ping" * 100
            seen.add(conn.backend)
    assert seen == {"b", "c"}


def test_a_connection_stays_on_its_backend(setup: Setup) -> None:
    setup.service(setup.backends(setup.b, setup.c))
    conn = connect(setup.client)
    with conn.sock:
        for i in range(50):
            payload = f"message {i} ".encode() * 50
            assert conn.round_trip(payload) == payload  # a switch of backend would reset it


def test_removing_a_backend_keeps_its_connections_and_moves_new_ones(setup: Setup) -> None:
    setup.service(setup.backends(setup.b, setup.c))
    conn = connect(setup.client)
    with conn.sock:
        gone, other = (setup.b, setup.c) if conn.backend == "b" else (setup.c, setup.b)
        setup.service(setup.backends(other, terminating=(gone,)))
        assert conn.round_trip(b"still here") == b"still here"
        for _ in range(10):
            fresh = connect(setup.client)
            with fresh.sock:
                assert fresh.backend == other.name
        assert conn.round_trip(b"and now") == b"and now"


def test_a_service_without_backends_refuses_connections_at_once(setup: Setup) -> None:
    setup.service([])
    before = _drops(setup.node, DROP_NO_SERVICE)
    started = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        connect(setup.client)
    assert time.monotonic() - started < CONNECT_TIMEOUT / 2  # an ICMP answer, not a timeout
    assert _drops(setup.node, DROP_NO_SERVICE) == before + 1


def test_a_service_gaining_a_backend_serves_again(setup: Setup) -> None:
    setup.service([])
    with pytest.raises(ConnectionRefusedError):
        connect(setup.client)
    setup.service(setup.backends(setup.c))
    conn = connect(setup.client)
    with conn.sock:
        assert conn.backend == "c"


def test_udp_answers_come_from_the_vip(setup: Setup) -> None:
    setup.service(setup.backends(setup.b, setup.c, proto="UDP"), proto="UDP")

    def ask() -> tuple[bytes, tuple[str, int]]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            sock.sendto(b"who?", (VIP, VPORT))
            return sock.recvfrom(2048)

    names = set()
    for _ in range(16):
        name, peer = run_in_netns(setup.client.netns, ask)
        assert peer == (VIP, VPORT)
        names.add(name)
    assert names == {b"b", b"c"}


def test_egress_policy_applies_to_the_selected_backend(setup: Setup) -> None:
    dp = setup.node.datapath
    record = dp.endpoints.get(setup.client.ip)
    dp.endpoints.update(setup.client.ip, replace(record, flags=POLICY_EGRESS_ENFORCED))
    dp.policy.sync([PolicyRule(ep_id=record.ep_id, direction=DIR_EGRESS, identity=ID_B, protocol=6, port=PORT)])

    setup.service(setup.backends(setup.b))
    conn = connect(setup.client)
    with conn.sock:
        assert conn.backend == "b"

    setup.service(setup.backends(setup.c))
    before = _drops(setup.node, DROP_POLICY)
    with pytest.raises(TimeoutError):
        connect(setup.client)
    assert _drops(setup.node, DROP_POLICY) > before
