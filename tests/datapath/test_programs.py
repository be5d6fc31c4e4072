"""from_container / to_container behaviour, packet by packet, with BPF_PROG_TEST_RUN."""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator

import pytest

from membrane.datapath.bpf.bpf_object import BpfObject
from membrane.datapath.bpf.syscalls import prog_test_run
from membrane.datapath.maps.endpoints import EndpointRecord, EndpointsMap
from membrane.datapath.maps.metrics import METRIC_EGRESS, METRIC_INGRESS, MetricCounters, MetricsMap
from membrane.model.datapath_codes import DROP_INVALID, REASON_FORWARDED
from tests.datapath.packets import (
    BROADCAST,
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_IPV6,
    arp,
    checksum,
    ethernet,
    icmp_echo,
    ip_bytes,
    ipv4,
    mac_bytes,
    mac_text,
    send_as,
)

pytestmark = pytest.mark.root

TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7
ROUTER = "10.200.0.1"
A = ("10.200.0.10", EndpointRecord(ifindex=11, ep_id=1, pod_mac="0a:00:00:00:00:0a", lxc_mac="0e:00:00:00:00:0a"))
B = ("10.200.0.11", EndpointRecord(ifindex=12, ep_id=2, pod_mac="0a:00:00:00:00:0b", lxc_mac="0e:00:00:00:00:0b"))


class Programs:
    def __init__(self, obj: BpfObject, endpoints: EndpointsMap, metrics: MetricsMap) -> None:
        self.obj, self.endpoints, self.metrics = obj, endpoints, metrics

    def run(self, name: str, frame: bytes) -> tuple[int, bytes]:
        return prog_test_run(self.obj.program_fd(name), frame)

    def counters(self, reason: int, direction: int) -> MetricCounters:
        return self.metrics.read().get((reason, direction), MetricCounters(0, 0))


@pytest.fixture
def progs(pin_dir: str, lxc_object: str) -> Iterator[Programs]:
    with BpfObject.open(lxc_object, pin_root=pin_dir) as obj:
        obj.load()
        with EndpointsMap.open(pin_dir) as endpoints, MetricsMap.open(pin_dir) as metrics:
            for ip, record in (A, B):
                endpoints.update(ip, record)
            send_as(endpoints, A[0])
            yield Programs(obj, endpoints, metrics)


def _arp_request(sender: tuple[str, EndpointRecord], target_ip: str, sip: str | None = None) -> bytes:
    ip, rec = sender
    sip = ip if sip is None else sip
    return ethernet(BROADCAST, rec.pod_mac, ETH_P_ARP, arp(1, rec.pod_mac, sip, "00:00:00:00:00:00", target_ip))


def test_arp_request_is_answered_with_the_lxc_mac(progs: Programs) -> None:
    ip, rec = A
    before = progs.counters(REASON_FORWARDED, METRIC_EGRESS)
    verdict, out = progs.run("from_container", _arp_request(A, ROUTER))

    assert verdict == TC_ACT_REDIRECT
    assert out == ethernet(rec.pod_mac, rec.lxc_mac, ETH_P_ARP, arp(2, rec.lxc_mac, ROUTER, rec.pod_mac, ip))
    assert progs.counters(REASON_FORWARDED, METRIC_EGRESS).packets == before.packets + 1


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(_arp_request(A, A[0]), id="gratuitous"),
        pytest.param(_arp_request(A, A[0], sip="0.0.0.0"), id="probe"),
        pytest.param(ethernet(B[1].lxc_mac, A[1].pod_mac, ETH_P_ARP,
                              arp(2, A[1].pod_mac, A[0], B[1].lxc_mac, ROUTER)), id="reply-from-pod"),
        pytest.param(ethernet(BROADCAST, A[1].pod_mac, ETH_P_ARP,
                              arp(1, A[1].pod_mac, A[0], "00:00:00:00:00:00", ROUTER, hrd=6)), id="not-ethernet"),
    ],
)
def test_other_arp_goes_to_the_kernel_unchanged(progs: Programs, frame: bytes) -> None:
    assert progs.run("from_container", frame) == (TC_ACT_OK, frame)


def test_truncated_arp_is_dropped_as_invalid(progs: Programs) -> None:
    before = progs.counters(DROP_INVALID, METRIC_EGRESS)
    frame = _arp_request(A, ROUTER)[:14 + 8 + 6]  # header, then only part of the addresses
    assert progs.run("from_container", frame)[0] == TC_ACT_SHOT
    after = progs.counters(DROP_INVALID, METRIC_EGRESS)
    assert after == MetricCounters(before.packets + 1, before.bytes + len(frame))


def _ipv4_frame(dst_ip: str, ttl: int = 64, ident: int = 0x1234) -> bytes:
    packet = ipv4(A[0], dst_ip, icmp_echo(), ttl=ttl, ident=ident)
    return ethernet(A[1].lxc_mac, A[1].pod_mac, ETH_P_IP, packet)


def test_ipv4_to_a_local_endpoint_is_rewritten_and_redirected(progs: Programs) -> None:
    _, b = B
    frame = _ipv4_frame(B[0])
    before = progs.counters(REASON_FORWARDED, METRIC_EGRESS)

    verdict, out = progs.run("from_container", frame)

    assert verdict == TC_ACT_REDIRECT
    assert mac_text(out[0:6]) == b.pod_mac and mac_text(out[6:12]) == b.lxc_mac
    assert out[14 + 8] == 63  # TTL
    assert checksum(out[14:34]) == 0  # header checksum still valid
    # Nothing else changed: the TTL byte and the checksum are the only differences.
    changed = [i for i in range(12, len(frame)) if frame[i] != out[i]]
    assert set(changed) <= {14 + 8, 14 + 10, 14 + 11}
    assert progs.counters(REASON_FORWARDED, METRIC_EGRESS) == MetricCounters(before.packets + 1,
                                                                             before.bytes + len(frame))


def test_ttl_checksum_update_is_right_for_many_headers(progs: Programs) -> None:
    """The incremental update must handle every carry case; compare with a full recompute."""
    rng = random.Random(20240611)
    for _ in range(200):
        frame = _ipv4_frame(B[0], ttl=rng.randint(2, 255), ident=rng.randint(0, 0xFFFF))
        verdict, out = progs.run("from_container", frame)
        assert verdict == TC_ACT_REDIRECT
        assert out[14 + 8] == frame[14 + 8] - 1
        assert checksum(out[14:34]) == 0, out[14:34].hex()


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(_ipv4_frame("10.200.1.5"), id="not-a-local-endpoint"),
        pytest.param(_ipv4_frame(ROUTER), id="to-the-router"),
        pytest.param(_ipv4_frame(B[0], ttl=1), id="ttl-expires"),
        pytest.param(ethernet(A[1].lxc_mac, A[1].pod_mac, ETH_P_IPV6, bytes(40)), id="ipv6"),
    ],
)
def test_other_traffic_goes_to_the_kernel_unchanged(progs: Programs, frame: bytes) -> None:
    before = progs.counters(REASON_FORWARDED, METRIC_EGRESS)
    assert progs.run("from_container", frame) == (TC_ACT_OK, frame)
    assert progs.counters(REASON_FORWARDED, METRIC_EGRESS).packets == before.packets + 1


@pytest.mark.parametrize(
    "payload",
    [
        # (A frame too short for an IPv4 header cannot be tested: BPF_PROG_TEST_RUN rejects it.)
        pytest.param(bytes([0x65]) + ipv4(A[0], B[0], b"")[1:], id="version-6-in-ipv4-frame"),
        pytest.param(bytes([0x44]) + ipv4(A[0], B[0], b"")[1:], id="ihl-too-small"),
        pytest.param(ipv4(A[0], B[0], b"")[:2] + struct.pack("!H", 12) + ipv4(A[0], B[0], b"")[4:],
                     id="total-length-shorter-than-header"),
    ],
)
def test_malformed_ipv4_is_dropped_as_invalid(progs: Programs, payload: bytes) -> None:
    before = progs.counters(DROP_INVALID, METRIC_EGRESS)
    frame = ethernet(A[1].lxc_mac, A[1].pod_mac, ETH_P_IP, payload)
    assert progs.run("from_container", frame)[0] == TC_ACT_SHOT
    assert progs.counters(DROP_INVALID, METRIC_EGRESS).packets == before.packets + 1


def test_to_container_counts_and_passes(progs: Programs) -> None:
    frame = ethernet(B[1].pod_mac, B[1].lxc_mac, ETH_P_IP, ipv4(A[0], B[0], icmp_echo(), ttl=63))
    before = progs.counters(REASON_FORWARDED, METRIC_INGRESS)
    assert progs.run("to_container", frame) == (TC_ACT_OK, frame)
    assert progs.counters(REASON_FORWARDED, METRIC_INGRESS) == MetricCounters(before.packets + 1,
                                                                              before.bytes + len(frame))


def test_an_endpoint_update_takes_effect_for_the_next_packet(progs: Programs) -> None:
    ip, rec = B
    moved = EndpointRecord(ifindex=99, ep_id=rec.ep_id, pod_mac="0a:00:00:00:00:99", lxc_mac="0e:00:00:00:00:99")
    progs.endpoints.update(ip, moved)
    _, out = progs.run("from_container", _ipv4_frame(ip))
    assert out[0:6] == mac_bytes(moved.pod_mac) and out[6:12] == mac_bytes(moved.lxc_mac)
    progs.endpoints.delete(ip)
    frame = _ipv4_frame(ip)
    assert progs.run("from_container", frame) == (TC_ACT_OK, frame)
    assert ip_bytes(ip) == frame[30:34]
