"""Service translation packet by packet (BPF_PROG_TEST_RUN): DNAT at from_container, reverse NAT
at to_container, with checksums checked by full recomputation."""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from membrane.datapath.bpf.bpf_object import BpfObject
from membrane.datapath.bpf.syscalls import prog_test_run
from membrane.datapath.maps.conntrack import CT_SERVICE, ConntrackMap
from membrane.datapath.maps.endpoints import EndpointRecord, EndpointsMap
from membrane.datapath.maps.lb import Backend, Frontend, LBMaps
from membrane.datapath.maps.metrics import METRIC_EGRESS, MetricCounters, MetricsMap
from tests.datapath.packets import ETH_P_IP, checksum, ethernet, ip_bytes, ipv4, send_as

pytestmark = pytest.mark.root

TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7
DROP_NO_SERVICE = 158
TCP, UDP = 6, 17
VIP, VPORT = "10.96.0.50", 80
A = ("10.200.0.10", EndpointRecord(ifindex=11, ep_id=1, pod_mac="0a:00:00:00:00:0a", lxc_mac="0e:00:00:00:00:0a"))
B = ("10.200.0.11", EndpointRecord(ifindex=12, ep_id=2, pod_mac="0a:00:00:00:00:0b", lxc_mac="0e:00:00:00:00:0b"))
C = ("10.200.0.12", EndpointRecord(ifindex=13, ep_id=3, pod_mac="0a:00:00:00:00:0c", lxc_mac="0e:00:00:00:00:0c"))
BACKEND_B = Backend(1, B[0], 8080)
BACKEND_C = Backend(2, C[0], 8080)
REMOTE = Backend(3, "10.201.0.7", 9090)


@dataclass
class Programs:
    obj: BpfObject
    lb: LBMaps
    ct: ConntrackMap
    metrics: MetricsMap

    def run(self, name: str, frame: bytes) -> tuple[int, bytes]:
        return prog_test_run(self.obj.program_fd(name), frame)

    def counters(self, reason: int, direction: int) -> MetricCounters:
        return self.metrics.read().get((reason, direction), MetricCounters(0, 0))


@pytest.fixture
def progs(pin_dir: str, lxc_object: str) -> Iterator[Programs]:
    with BpfObject.open(lxc_object, pin_root=pin_dir) as obj:
        obj.load()
        with EndpointsMap.open(pin_dir) as endpoints, LBMaps.open(pin_dir) as lb, \
                ConntrackMap.open(pin_dir) as ct, MetricsMap.open(pin_dir) as metrics:
            for ip, record in (A, B, C):
                endpoints.update(ip, record)
            send_as(endpoints, A[0])
            yield Programs(obj, lb, ct, metrics)


def _l4(proto: int, src: str, dst: str, sport: int, dport: int, payload: bytes, flags: int, csum: bool) -> bytes:
    if proto == TCP:
        header = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, flags, 65535, 0, 0)
        offset = 16
    else:
        header = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
        offset = 6
    segment = header + payload
    if csum:
        pseudo = ip_bytes(src) + ip_bytes(dst) + struct.pack("!BBH", 0, proto, len(segment))
        value = checksum(pseudo + segment) or (0xFFFF if proto == UDP else 0)
        segment = segment[:offset] + struct.pack("!H", value) + segment[offset + 2:]
    return segment


def frame(src: str, dst: str, sport: int, dport: int, proto: int = TCP, payload: bytes = b"hello",
          flags: int = 0x02, csum: bool = True, ident: int = 0x1234) -> bytes:
    segment = _l4(proto, src, dst, sport, dport, payload, flags, csum)
    return ethernet(A[1].lxc_mac, A[1].pod_mac, ETH_P_IP, ipv4(src, dst, segment, proto=proto, ident=ident))


def l4_checksum_ok(out: bytes) -> bool:
    ihl = (out[14] & 0x0F) * 4
    total = struct.unpack("!H", out[16:18])[0]
    segment = out[14 + ihl:14 + total]
    pseudo = out[26:34] + struct.pack("!BBH", 0, out[23], len(segment))
    return checksum(pseudo + segment) == 0


def tuple_of(out: bytes) -> tuple[str, int, str, int]:
    sport, dport = struct.unpack("!HH", out[34:38])
    return str(ipaddress.IPv4Address(out[26:30])), sport, str(ipaddress.IPv4Address(out[30:34])), dport


def test_a_new_connection_to_a_frontend_is_translated_to_the_backend(progs: Programs) -> None:
    progs.lb.upsert_service(Frontend(VIP, VPORT), [BACKEND_B], rev_nat_index=7)
    verdict, out = progs.run("from_container", frame(A[0], VIP, 40000, VPORT))

    assert verdict == TC_ACT_REDIRECT  # a local backend: straight to its lxc device
    assert tuple_of(out) == (A[0], 40000, B[0], 8080)
    assert checksum(out[14:34]) == 0
    assert l4_checksum_ok(out)
    service = [r for r in progs.ct.rows() if r.direction == CT_SERVICE]
    assert [(r.saddr, r.sport, r.daddr, r.dport) for r in service] == [(A[0], 40000, VIP, VPORT)]


def test_the_reply_gets_the_frontend_back_as_its_source(progs: Programs) -> None:
    progs.lb.upsert_service(Frontend(VIP, VPORT), [BACKEND_B], rev_nat_index=7)
    assert progs.run("from_container", frame(A[0], VIP, 40001, VPORT))[0] == TC_ACT_REDIRECT

    reply = frame(B[0], A[0], 8080, 40001, flags=0x12, payload=b"world")
    verdict, out = progs.run("to_container", reply)

    assert verdict == TC_ACT_OK
    assert tuple_of(out) == (VIP, VPORT, A[0], 40001)
    assert checksum(out[14:34]) == 0 and l4_checksum_ok(out)


def test_traffic_to_the_backend_address_itself_is_not_reverse_translated(progs: Programs) -> None:
    progs.lb.upsert_service(Frontend(VIP, VPORT), [BACKEND_B], rev_nat_index=7)
    assert progs.run("from_container", frame(A[0], B[0], 40002, 8080))[0] == TC_ACT_REDIRECT
    reply = frame(B[0], A[0], 8080, 40002, flags=0x12)
    assert progs.run("to_container", reply) == (TC_ACT_OK, reply)


@pytest.mark.parametrize("proto", [TCP, UDP], ids=["tcp", "udp"])
def test_checksums_are_right_for_many_packets(progs: Programs, proto: int) -> None:
    """Incremental updates must get every carry right: compare with a full recompute."""
    progs.lb.upsert_service(Frontend(VIP, VPORT, "TCP" if proto == TCP else "UDP"),
                            [Backend(1, B[0], 8080, "TCP" if proto == TCP else "UDP")], rev_nat_index=9)
    rng = random.Random(5150)
    for _ in range(100):
        sport = rng.randint(1024, 65535)
        payload = rng.randbytes(rng.randint(0, 40))
        verdict, out = progs.run("from_container", frame(A[0], VIP, sport, VPORT, proto=proto, payload=payload,
                                                         ident=rng.randint(0, 0xFFFF)))
        assert verdict == TC_ACT_REDIRECT
        assert tuple_of(out) == (A[0], sport, B[0], 8080)
        assert checksum(out[14:34]) == 0 and l4_checksum_ok(out), out.hex()
        _, back = progs.run("to_container", frame(B[0], A[0], 8080, sport, proto=proto, payload=payload, flags=0x10))
        assert tuple_of(back) == (VIP, VPORT, A[0], sport)
        assert checksum(back[14:34]) == 0 and l4_checksum_ok(back), back.hex()


def test_a_udp_packet_without_checksum_keeps_none(progs: Programs) -> None:
    progs.lb.upsert_service(Frontend(VIP, 53, "UDP"), [Backend(1, B[0], 5353, "UDP")], rev_nat_index=3)
    _, out = progs.run("from_container", frame(A[0], VIP, 40000, 53, proto=UDP, csum=False))
    assert tuple_of(out) == (A[0], 40000, B[0], 5353)
    assert out[40:42] == b"\0\0"
    assert checksum(out[14:34]) == 0


def test_a_remote_backend_goes_to_the_stack(progs: Programs) -> None:
    progs.lb.upsert_service(Frontend(VIP, VPORT), [REMOTE], rev_nat_index=4)
    verdict, out = progs.run("from_container", frame(A[0], VIP, 40000, VPORT))
    assert verdict == TC_ACT_OK
    assert tuple_of(out) == (A[0], 40000, REMOTE.address, REMOTE.port)
    assert l4_checksum_ok(out)


def test_later_packets_stay_on_the_chosen_backend(progs: Programs) -> None:
    progs.lb.upsert_service(Frontend(VIP, VPORT), [BACKEND_B, BACKEND_C], rev_nat_index=7)
    first = tuple_of(progs.run("from_container", frame(A[0], VIP, 41000, VPORT))[1])[2]
    for _ in range(20):
        out = progs.run("from_container", frame(A[0], VIP, 41000, VPORT, flags=0x10))[1]
        assert tuple_of(out)[2] == first


def test_new_connections_use_every_backend(progs: Programs) -> None:
    progs.lb.upsert_service(Frontend(VIP, VPORT), [BACKEND_B, BACKEND_C], rev_nat_index=7)
    chosen = {tuple_of(progs.run("from_container", frame(A[0], VIP, 42000 + i, VPORT))[1])[2] for i in range(64)}
    assert chosen == {B[0], C[0]}


@pytest.mark.parametrize("proto", [TCP, UDP], ids=["tcp", "udp"])
def test_a_service_without_backends_answers_port_unreachable(progs: Programs, proto: int) -> None:
    progs.lb.upsert_service(Frontend(VIP, VPORT, "TCP" if proto == TCP else "UDP"), [], rev_nat_index=7)
    before = progs.counters(DROP_NO_SERVICE, METRIC_EGRESS)
    packet = frame(A[0], VIP, 40000, VPORT, proto=proto, payload=b"x" * (60 if proto == TCP else 0))

    verdict, out = progs.run("from_container", packet)

    # Counted (and reported) as a drop with 158, then sent back into the pod as ICMP.
    assert progs.counters(DROP_NO_SERVICE, METRIC_EGRESS) == MetricCounters(before.packets + 1,
                                                                           before.bytes + len(packet))
    assert verdict == TC_ACT_REDIRECT
    assert len(out) == 14 + 20 + 8 + 28
    assert out[0:6] == packet[6:12] and out[6:12] == packet[0:6]
    ip = out[14:34]
    assert ip[0] == 0x45 and ip[9] == 1 and struct.unpack("!H", ip[2:4])[0] == 56
    assert ip[12:16] == ip_bytes(VIP) and ip[16:20] == ip_bytes(A[0])
    assert checksum(ip) == 0
    icmp = out[34:]
    assert icmp[0:2] == bytes([3, 3]) and checksum(icmp) == 0
    assert icmp[8:] == packet[14:14 + 28]  # the offending header and 8 bytes of its payload


def test_other_ports_and_protocols_of_the_address_are_left_alone(progs: Programs) -> None:
    progs.lb.upsert_service(Frontend(VIP, VPORT), [BACKEND_B], rev_nat_index=7)
    for packet in (frame(A[0], VIP, 40000, 81), frame(A[0], VIP, 40000, VPORT, proto=UDP)):
        assert progs.run("from_container", packet) == (TC_ACT_OK, packet)


def test_maglev_picks_the_same_backend_for_the_same_tuple(progs: Programs) -> None:
    table = [BACKEND_B.id, BACKEND_C.id] * 125 + [BACKEND_B.id]  # M = 251
    progs.lb.upsert_service(Frontend(VIP, VPORT), [BACKEND_B, BACKEND_C], rev_nat_index=8, algorithm="maglev",
                            maglev_table=table)
    chosen = {}
    for sport in range(43000, 43040):
        chosen[sport] = tuple_of(progs.run("from_container", frame(A[0], VIP, sport, VPORT))[1])[2]
    assert set(chosen.values()) == {B[0], C[0]}
    progs.ct.flush()  # forget the connections: the table alone decides again
    for sport, backend in chosen.items():
        assert tuple_of(progs.run("from_container", frame(A[0], VIP, sport, VPORT))[1])[2] == backend


def test_client_ip_affinity_keeps_a_client_on_one_backend(progs: Programs) -> None:
    progs.lb.upsert_service(Frontend(VIP, VPORT), [BACKEND_B, BACKEND_C], rev_nat_index=7, affinity_timeout=60)
    chosen = {tuple_of(progs.run("from_container", frame(A[0], VIP, 44000 + i, VPORT))[1])[2] for i in range(32)}
    assert len(chosen) == 1
