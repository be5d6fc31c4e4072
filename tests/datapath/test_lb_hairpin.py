"""Hairpin: a pod reaching itself through its own service (bpf/lib/lb.h). The connection is
SNATed to 169.254.42.1 on its way into the pod; replies get VIP:port back as their source."""

from __future__ import annotations

import ipaddress
import random
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from membrane.datapath.bpf.bpf_object import BpfObject
from membrane.datapath.bpf.syscalls import prog_test_run
from membrane.datapath.linux.netns import run_in_netns
from membrane.datapath.maps.conntrack import CT_EGRESS, CT_F_HAIRPIN, ConntrackMap
from membrane.datapath.maps.endpoints import POLICY_INGRESS_ENFORCED, EndpointRecord, EndpointsMap
from membrane.datapath.maps.ipcache import IpcacheEntry
from membrane.datapath.maps.lb import Backend, Frontend, LBMaps
from membrane.datapath.maps.policy import DIR_INGRESS, PolicyRule
from tests.datapath.netlab import NodeLab, Pod
from tests.datapath.packets import ETH_P_IP, checksum, ethernet, ip_bytes, ipv4, send_as

pytestmark = pytest.mark.root

LOOPBACK = "169.254.42.1"
VIP, VPORT, PORT = "10.96.0.77", 80, 8080
TCP, UDP = 6, 17
TC_ACT_OK, TC_ACT_REDIRECT = 0, 7
ID_SOLO, ID_OTHER = 2101, 2102
CONNECT_TIMEOUT = 1.0


# --- real sockets in namespaces -------------------------------------------------------------


class PeerServer:
    """TCP and UDP on PORT in a pod; every answer is ``name peer-address``."""

    def __init__(self, pod: Pod) -> None:
        def listen() -> tuple[socket.socket, socket.socket]:
            tcp = socket.socket()
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((pod.ip, PORT))
            tcp.listen(16)
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((pod.ip, PORT))
            return tcp, udp

        self.name = pod.name
        self.tcp, self.udp = run_in_netns(pod.netns, listen)

    def serve_tcp(self) -> None:
        self.tcp.settimeout(5)
        conn, peer = self.tcp.accept()
        with conn:
            conn.settimeout(5)
            data = conn.recv(1024)
            conn.sendall(f"{self.name} {peer[0]} ".encode() + data)

    def serve_udp(self) -> None:
        self.udp.settimeout(5)
        data, peer = self.udp.recvfrom(2048)
        self.udp.sendto(f"{self.name} {peer[0]} ".encode() + data, peer)

    def close(self) -> None:
        self.tcp.close()
        self.udp.close()


@dataclass
class Solo:
    node: NodeLab
    pod: Pod
    server: PeerServer

    def service(self, proto: str = "TCP") -> None:
        self.node.datapath.lb.upsert_service(Frontend(VIP, VPORT, proto), [Backend(1, self.pod.ip, PORT, proto)],
                                             rev_nat_index=1)


@pytest.fixture
def solo(node: NodeLab) -> Iterator[Solo]:
    pod = node.add_pod("solo", "10.200.0.20")
    dp = node.datapath
    dp.ipcache.update(f"{pod.ip}/32", IpcacheEntry(ID_SOLO))
    dp.endpoints.update(pod.ip, replace(dp.endpoints.get(pod.ip), sec_identity=ID_SOLO))
    server = PeerServer(pod)
    yield Solo(node, pod, server)
    server.close()


def _tcp_round_trip(solo: Solo) -> tuple[tuple[str, int], bytes]:
    thread = threading.Thread(target=solo.server.serve_tcp, daemon=True)
    thread.start()
    try:
        sock = run_in_netns(solo.pod.netns, socket.create_connection, (VIP, VPORT), CONNECT_TIMEOUT)
        with sock:
            sock.settimeout(5)
            peer = sock.getpeername()
            sock.sendall(b"hello me")
            got = b""
            while chunk := sock.recv(1024):
                got += chunk
        return peer, got
    finally:
        thread.join(timeout=6)


def test_a_pod_reaches_itself_through_its_service_over_tcp(solo: Solo) -> None:
    solo.service()
    peer, answer = _tcp_round_trip(solo)
    assert peer == (VIP, VPORT)  # the client socket talks to the VIP
    assert answer == f"solo {LOOPBACK} hello me".encode()  # the server socket saw 169.254.42.1
    egress = [r for r in solo.node.datapath.conntrack.rows() if r.direction == CT_EGRESS and r.daddr == solo.pod.ip
              and r.saddr == solo.pod.ip]
    assert egress and all(r.flags & CT_F_HAIRPIN for r in egress)


def test_a_pod_reaches_itself_through_its_service_over_udp(solo: Solo) -> None:
    solo.service("UDP")

    def ask() -> tuple[bytes, tuple[str, int]]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(b"who?", (VIP, VPORT))
            return sock.recvfrom(2048)

    thread = threading.Thread(target=solo.server.serve_udp, daemon=True)
    thread.start()
    answer, peer = run_in_netns(solo.pod.netns, ask)
    thread.join(timeout=6)
    assert peer == (VIP, VPORT)
    assert answer == f"solo {LOOPBACK} who?".encode()


def test_ingress_policy_sees_hairpin_traffic_as_the_pod_itself(solo: Solo) -> None:
    dp = solo.node.datapath
    record = dp.endpoints.get(solo.pod.ip)
    dp.endpoints.update(solo.pod.ip, replace(record, flags=POLICY_INGRESS_ENFORCED))
    dp.policy.sync([PolicyRule(ep_id=record.ep_id, direction=DIR_INGRESS, identity=ID_SOLO, protocol=TCP, port=PORT)])
    solo.service()
    assert _tcp_round_trip(solo)[0] == (VIP, VPORT)

    dp.policy.sync([PolicyRule(ep_id=record.ep_id, direction=DIR_INGRESS, identity=ID_OTHER, protocol=TCP,
                               port=PORT)])
    with pytest.raises(TimeoutError):
        run_in_netns(solo.pod.netns, socket.create_connection, (VIP, VPORT), CONNECT_TIMEOUT)


# --- packet by packet (BPF_PROG_TEST_RUN) ----------------------------------------------------

A = ("10.200.0.10", EndpointRecord(ifindex=11, ep_id=1, pod_mac="0a:00:00:00:00:0a", lxc_mac="0e:00:00:00:00:0a"))


@dataclass
class Programs:
    obj: BpfObject
    lb: LBMaps
    ct: ConntrackMap

    def run(self, name: str, frame: bytes) -> tuple[int, bytes]:
        return prog_test_run(self.obj.program_fd(name), frame)


@pytest.fixture
def progs(pin_dir: str, lxc_object: str) -> Iterator[Programs]:
    with BpfObject.open(lxc_object, pin_root=pin_dir) as obj:
        obj.load()
        with EndpointsMap.open(pin_dir) as endpoints, LBMaps.open(pin_dir) as lb, ConntrackMap.open(pin_dir) as ct:
            endpoints.update(*A)
            send_as(endpoints, A[0])
            yield Programs(obj, lb, ct)


def frame(src: str, dst: str, sport: int, dport: int, proto: int = TCP, payload: bytes = b"hello",
          flags: int = 0x02, ident: int = 0x1234) -> bytes:
    if proto == TCP:
        header = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, flags, 65535, 0, 0)
        offset = 16
    else:
        header = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
        offset = 6
    segment = header + payload
    pseudo = ip_bytes(src) + ip_bytes(dst) + struct.pack("!BBH", 0, proto, len(segment))
    value = checksum(pseudo + segment) or (0xFFFF if proto == UDP else 0)
    segment = segment[:offset] + struct.pack("!H", value) + segment[offset + 2:]
    return ethernet(A[1].lxc_mac, A[1].pod_mac, ETH_P_IP, ipv4(src, dst, segment, proto=proto, ident=ident))


def checksums_ok(out: bytes) -> bool:
    ihl = (out[14] & 0x0F) * 4
    total = struct.unpack("!H", out[16:18])[0]
    segment = out[14 + ihl:14 + total]
    pseudo = out[26:34] + struct.pack("!BBH", 0, out[23], len(segment))
    return checksum(out[14:14 + ihl]) == 0 and checksum(pseudo + segment) == 0


def tuple_of(out: bytes) -> tuple[str, int, str, int]:
    sport, dport = struct.unpack("!HH", out[34:38])
    return str(ipaddress.IPv4Address(out[26:30])), sport, str(ipaddress.IPv4Address(out[30:34])), dport


def _service(progs: Programs, proto: int) -> None:
    name = "TCP" if proto == TCP else "UDP"
    progs.lb.upsert_service(Frontend(VIP, VPORT, name), [Backend(1, A[0], PORT, name)], rev_nat_index=5)


def test_the_request_is_snated_to_the_loopback_address_and_sent_back_into_the_pod(progs: Programs) -> None:
    _service(progs, TCP)
    verdict, out = progs.run("from_container", frame(A[0], VIP, 40000, VPORT))
    assert verdict == TC_ACT_REDIRECT
    assert tuple_of(out) == (LOOPBACK, 40000, A[0], PORT)
    assert out[0:6] == bytes.fromhex(A[1].pod_mac.replace(":", ""))
    assert checksums_ok(out)
    hairpin = [r for r in progs.ct.rows() if r.flags & CT_F_HAIRPIN]
    assert [(r.direction, r.saddr, r.sport, r.daddr, r.dport) for r in hairpin] == \
        [(CT_EGRESS, A[0], 40000, A[0], PORT)]
    # Into the pod unchanged: the server sees 169.254.42.1.
    assert progs.run("to_container", out) == (TC_ACT_OK, out)


def test_a_packet_to_the_loopback_address_without_a_hairpin_connection_is_left_alone(progs: Programs) -> None:
    stray = frame(A[0], LOOPBACK, PORT, 40000, flags=0x12)
    assert progs.run("to_container", stray) == (TC_ACT_OK, stray)


@pytest.mark.parametrize("proto", [TCP, UDP], ids=["tcp", "udp"])
def test_both_directions_translate_with_right_checksums(progs: Programs, proto: int) -> None:
    _service(progs, proto)
    rng = random.Random(4242)
    for _ in range(60):
        sport = rng.randint(1024, 65535)
        payload = rng.randbytes(rng.randint(0, 40))
        ident = rng.randint(0, 0xFFFF)
        verdict, request = progs.run("from_container", frame(A[0], VIP, sport, VPORT, proto, payload, ident=ident))
        assert verdict == TC_ACT_REDIRECT
        assert tuple_of(request) == (LOOPBACK, sport, A[0], PORT)
        assert checksums_ok(request), request.hex()
        verdict, delivered = progs.run("to_container", request)
        assert (verdict, delivered) == (TC_ACT_OK, request)

        # The server answers 169.254.42.1: back into the same pod, which sees VIP:port answer.
        verdict, reply = progs.run("from_container", frame(A[0], LOOPBACK, PORT, sport, proto, payload, flags=0x12,
                                                           ident=ident))
        assert verdict == TC_ACT_REDIRECT
        assert tuple_of(reply) == (A[0], PORT, LOOPBACK, sport)
        assert checksums_ok(reply), reply.hex()
        verdict, back = progs.run("to_container", reply)
        assert verdict == TC_ACT_OK
        assert tuple_of(back) == (VIP, VPORT, A[0], sport)
        assert checksums_ok(back), back.hex()
