"""Ingress policy between real pods on one node: TCP connections and ping through conntrack."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest

from membrane.datapath.linux.netns import run_in_netns
from membrane.datapath.maps.endpoints import POLICY_INGRESS_ENFORCED
from membrane.datapath.maps.ipcache import IpcacheEntry
from membrane.datapath.maps.metrics import METRIC_INGRESS
from membrane.datapath.maps.policy import DIR_INGRESS, PolicyRule
from membrane.model.datapath_codes import DROP_POLICY, DROP_POLICY_DENY
from tests.datapath.netlab import NodeLab, Pod, ping, ping_counts

pytestmark = pytest.mark.root

PORT = 8080
ID_A, ID_B = 1001, 1002
CONNECT_TIMEOUT = 1.0  # a dropped SYN: connect() gives up after this


class EchoServer:
    """Echo server listening in a pod's namespace, served by threads of this process."""

    def __init__(self, pod: Pod) -> None:
        def listen() -> socket.socket:
            srv = socket.socket()
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind((pod.ip, PORT))
            srv.listen(8)
            return srv

        self.sock = run_in_netns(pod.netns, listen)  # the socket stays in the pod's namespace
        self.sock.settimeout(0.2)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        conn.settimeout(10)
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.sock.close()


def connect(pod: Pod, ip: str) -> socket.socket:
    return run_in_netns(pod.netns, socket.create_connection, (ip, PORT), CONNECT_TIMEOUT)


def round_trip(conn: socket.socket, payload: bytes) -> bytes:
    conn.settimeout(5)
    conn.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = conn.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


@pytest.fixture
def pods(node: NodeLab) -> Iterator[tuple[Pod, Pod, EchoServer]]:
    a = node.add_pod("a", "10.200.0.10")
    b = node.add_pod("b", "10.200.0.11")
    dp = node.datapath
    for pod, identity in ((a, ID_A), (b, ID_B)):
        dp.ipcache.update(f"{pod.ip}/32", IpcacheEntry(identity))
        dp.endpoints.update(pod.ip, replace(dp.endpoints.get(pod.ip), sec_identity=identity))
    record = dp.endpoints.get(b.ip)
    dp.endpoints.update(b.ip, replace(record, flags=POLICY_INGRESS_ENFORCED))
    server = EchoServer(b)
    yield a, b, server
    server.close()


def _drops(node: NodeLab, reason: int) -> int:
    return node.datapath.metrics().get((reason, METRIC_INGRESS), (0, 0))[0]


def _allow(node: NodeLab, pod: Pod, **kw: int) -> PolicyRule:
    return PolicyRule(ep_id=node.datapath.endpoints.get(pod.ip).ep_id, direction=DIR_INGRESS, identity=ID_A, **kw)


def test_tcp_needs_an_allow_and_keeps_established_connections(node: NodeLab, pods) -> None:
    a, b, _server = pods
    with pytest.raises(TimeoutError):
        connect(a, b.ip).close()
    assert _drops(node, DROP_POLICY) >= 1

    rule = _allow(node, b, protocol=6, port=PORT)
    node.datapath.policy.sync([rule])
    with connect(a, b.ip) as established:
        assert round_trip(established, b"hello" * 1000) == b"hello" * 1000

        # The allow goes away: the open connection goes on, a new one is refused.
        assert node.datapath.policy.sync([]).removed == 1
        with pytest.raises(TimeoutError):
            connect(a, b.ip).close()
        assert round_trip(established, b"still here") == b"still here"


def test_a_deny_beats_the_allow(node: NodeLab, pods) -> None:
    a, b, _server = pods
    node.datapath.policy.sync([_allow(node, b, protocol=6, port=PORT),
                               _allow(node, b, protocol=6, port=8000, end_port=8191, deny=True)])
    before = _drops(node, DROP_POLICY_DENY)
    with pytest.raises(TimeoutError):
        connect(a, b.ip).close()
    assert _drops(node, DROP_POLICY_DENY) > before


def test_ping_allowed_then_denied(node: NodeLab, pods) -> None:
    a, b, _server = pods
    assert ping_counts(ping(a, b.ip, count=1, wait=1).stdout)[1] == 0

    node.datapath.policy.sync([_allow(node, b, protocol=1, port=8)])  # echo request
    result = ping(a, b.ip, count=3, interval=0.05)
    assert ping_counts(result.stdout) == (3, 3), result.stdout + result.stderr

    node.datapath.policy.sync([_allow(node, b, protocol=1, port=8, deny=True)])
    before = _drops(node, DROP_POLICY_DENY)
    assert ping_counts(ping(a, b.ip, count=1, wait=1).stdout)[1] == 0
    assert _drops(node, DROP_POLICY_DENY) > before
