"""from_container trusts the veth, not the packet: a source address or MAC that is not the sending
endpoint's own is dropped (132 "Invalid source ip", 130 "Invalid source mac") and reported as sent
by that endpoint. Packet by packet with BPF_PROG_TEST_RUN, events read through EventMonitor."""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Iterator

import pytest

from membrane.datapath.bpf.bpf_object import BpfObject
from membrane.datapath.bpf.syscalls import prog_test_run
from membrane.datapath.maps.endpoints import EndpointRecord, EndpointsMap
from membrane.datapath.maps.events import DIRECTION_EGRESS, DatapathEvent
from membrane.datapath.maps.ipcache import IpcacheEntry, IpcacheMap
from membrane.datapath.maps.metrics import METRIC_EGRESS, MetricCounters, MetricsMap
from membrane.datapath.monitor import EventMonitor
from membrane.model.datapath_codes import DROP_INVALID_SIP, DROP_INVALID_SMAC
from tests.datapath.packets import (
    BROADCAST,
    ETH_P_ARP,
    ETH_P_IP,
    TEST_RUN_IFINDEX,
    arp,
    ethernet,
    icmp_echo,
    ipv4,
    send_as,
)

pytestmark = pytest.mark.root

TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7
UDP, TCP = 17, 6
ID_A, ID_B, ID_WORLD = 1001, 1002, 2
ROUTER = "10.200.0.1"
A = ("10.200.0.10", EndpointRecord(ifindex=11, ep_id=7, pod_mac="0a:00:00:00:00:0a", lxc_mac="0e:00:00:00:00:0a",
                                   sec_identity=ID_A))
B = ("10.200.0.11", EndpointRecord(ifindex=12, ep_id=8, pod_mac="0a:00:00:00:00:0b", lxc_mac="0e:00:00:00:00:0b",
                                   sec_identity=ID_B))
OTHER_MAC = "0a:00:00:00:00:99"


def udp(sport: int, dport: int) -> bytes:
    return struct.pack("!HHHH", sport, dport, 9, 0) + b"x"


def syn(sport: int, dport: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0)


class Node:
    def __init__(self, obj: BpfObject, pin_dir: str) -> None:
        self.obj = obj
        self.endpoints = EndpointsMap.open(pin_dir)
        self.ipcache = IpcacheMap.open(pin_dir)
        self.metrics = MetricsMap.open(pin_dir)
        self.received: list[DatapathEvent] = []
        self.monitor = EventMonitor(pin_dir, self.received.append)

    def close(self) -> None:
        self.monitor.stop()
        for handle in (self.endpoints, self.ipcache, self.metrics):
            handle.close()

    def run(self, frame: bytes) -> int:
        return prog_test_run(self.obj.program_fd("from_container"), frame)[0]

    def drops(self, reason: int) -> int:
        return self.metrics.read().get((reason, METRIC_EGRESS), MetricCounters(0, 0)).packets

    def events(self) -> list[DatapathEvent]:
        self.monitor.stop()
        return list(self.received)


@pytest.fixture
def node(pin_dir: str, lxc_object: str) -> Iterator[Node]:
    with BpfObject.open(lxc_object, pin_root=pin_dir) as obj:
        obj.load()
        n = Node(obj, pin_dir)
        try:
            for ip, record in (A, B):
                n.endpoints.update(ip, record)
                n.ipcache.update(f"{ip}/32", IpcacheEntry(record.sec_identity))
            n.ipcache.update("0.0.0.0/0", IpcacheEntry(ID_WORLD))
            send_as(n.endpoints, A[0])  # the test run's device is A's veth
            n.monitor.start()
            yield n
        finally:
            n.close()


def ip_frame(src_ip: str, dst_ip: str, l4: bytes, proto: int, src_mac: str = A[1].pod_mac) -> bytes:
    return ethernet(A[1].lxc_mac, src_mac, ETH_P_IP, ipv4(src_ip, dst_ip, l4, proto=proto))


def arp_frame(op: int, sha: str, sip: str, tip: str, eth_src: str | None = None) -> bytes:
    dst = BROADCAST if op == 1 else A[1].lxc_mac
    tha = "00:00:00:00:00:00" if op == 1 else A[1].lxc_mac
    return ethernet(dst, eth_src or sha, ETH_P_ARP, arp(op, sha, sip, tha, tip))


def random_addresses(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < count:
        ip = str(ipaddress.IPv4Address(rng.getrandbits(32)))
        if ip != A[0]:
            out.append(ip)
    # the addresses an attacker would pick first: the neighbour pod, the router, the world, a node
    return [B[0], ROUTER, "203.0.113.11", "192.168.10.101", "0.0.0.0", "255.255.255.255", *out]


def test_random_source_addresses_are_dropped_and_name_the_real_sender(node: Node) -> None:
    spoofed = random_addresses(200, seed=21)
    before = node.drops(DROP_INVALID_SIP)
    for i, src in enumerate(spoofed):
        proto, l4 = (UDP, udp(50000 + i, 7777)) if i % 2 else (TCP, syn(50000 + i, 7777))
        assert node.run(ip_frame(src, B[0], l4, proto)) == TC_ACT_SHOT, src
    assert node.drops(DROP_INVALID_SIP) == before + len(spoofed)
    drops = [e for e in node.events() if e.is_drop]
    assert len(drops) == len(spoofed)
    for event in drops:
        # The sender is A, whatever source the packet claimed; the destination is still B.
        assert (event.drop_reason, event.ep_id, event.src_identity, event.dst_identity, event.direction) == \
               (DROP_INVALID_SIP, A[1].ep_id, ID_A, ID_B, DIRECTION_EGRESS)


def test_the_own_address_passes(node: Node) -> None:
    assert node.run(ip_frame(A[0], B[0], udp(40000, 7777), UDP)) == TC_ACT_REDIRECT  # local pod
    assert node.run(ip_frame(A[0], "203.0.113.11", udp(40000, 53), UDP)) == TC_ACT_OK  # to the stack
    assert node.drops(DROP_INVALID_SIP) == 0


def test_the_identity_follows_the_device_not_the_address(node: Node) -> None:
    """Sent on B's veth with B's address, the packet is B's; A's address there is a spoof."""
    send_as(node.endpoints, B[0])
    frame_b = ethernet(B[1].lxc_mac, B[1].pod_mac, ETH_P_IP, ipv4(B[0], A[0], icmp_echo(), proto=1))
    assert node.run(frame_b) == TC_ACT_REDIRECT
    frame_spoof = ethernet(B[1].lxc_mac, B[1].pod_mac, ETH_P_IP, ipv4(A[0], "203.0.113.11", icmp_echo(), proto=1))
    assert node.run(frame_spoof) == TC_ACT_SHOT
    (drop,) = [e for e in node.events() if e.is_drop]
    assert (drop.ep_id, drop.src_identity) == (B[1].ep_id, ID_B)


def test_a_foreign_source_mac_is_dropped(node: Node) -> None:
    assert node.run(ip_frame(A[0], B[0], udp(40000, 7777), UDP, src_mac=OTHER_MAC)) == TC_ACT_SHOT
    assert node.run(ip_frame(A[0], B[0], udp(40000, 7777), UDP, src_mac=B[1].pod_mac)) == TC_ACT_SHOT
    assert node.drops(DROP_INVALID_SMAC) == 2
    assert all(e.drop_reason == DROP_INVALID_SMAC and e.ep_id == A[1].ep_id for e in node.events() if e.is_drop)


def test_a_device_bound_to_no_endpoint_sends_nothing(node: Node) -> None:
    node.endpoints.devices.delete(TEST_RUN_IFINDEX)
    assert node.run(ip_frame(A[0], B[0], udp(40000, 7777), UDP)) == TC_ACT_SHOT
    assert node.run(arp_frame(1, A[1].pod_mac, A[0], ROUTER)) == TC_ACT_SHOT
    assert node.drops(DROP_INVALID_SIP) == 2


def test_a_deleted_endpoint_unbinds_its_device(node: Node) -> None:
    node.endpoints.update(A[0], A[1])  # binds A's own ifindex (11) too
    node.endpoints.delete(B[0])
    assert node.endpoints.devices.get(B[1].ifindex) is None
    assert node.endpoints.devices.get(A[1].ifindex) == A[0]
    moved = EndpointRecord(ifindex=21, ep_id=A[1].ep_id, pod_mac=A[1].pod_mac, lxc_mac=A[1].lxc_mac)
    node.endpoints.update(A[0], moved)
    assert node.endpoints.devices.get(A[1].ifindex) is None and node.endpoints.devices.get(21) == A[0]
    # lo's binding (the test run's device) points at A, whose entry names ifindex 21: stale.
    assert node.endpoints.prune_devices() == [TEST_RUN_IFINDEX]
    node.endpoints.delete(A[0])
    assert node.endpoints.devices.items() == []


@pytest.mark.parametrize("sip", [B[0], ROUTER, "203.0.113.11", "192.168.10.101"])
@pytest.mark.parametrize("op", [1, 2], ids=["request", "reply"])
def test_arp_claiming_another_address_is_dropped(node: Node, op: int, sip: str) -> None:
    assert node.run(arp_frame(op, A[1].pod_mac, sip, ROUTER if sip != ROUTER else B[0])) == TC_ACT_SHOT
    assert node.drops(DROP_INVALID_SIP) == 1
    (drop,) = [e for e in node.events() if e.is_drop]
    assert (drop.drop_reason, drop.ep_id, drop.src_identity) == (DROP_INVALID_SIP, A[1].ep_id, ID_A)


@pytest.mark.parametrize("sha, eth_src", [(OTHER_MAC, None), (A[1].pod_mac, OTHER_MAC), (B[1].pod_mac, None)],
                         ids=["arp-sender", "ethernet-source", "neighbour-mac"])
def test_arp_with_a_foreign_mac_is_dropped(node: Node, sha: str, eth_src: str | None) -> None:
    assert node.run(arp_frame(1, sha, A[0], ROUTER, eth_src=eth_src)) == TC_ACT_SHOT
    assert node.drops(DROP_INVALID_SMAC) == 1


def test_honest_arp_still_works(node: Node) -> None:
    assert node.run(arp_frame(1, A[1].pod_mac, A[0], ROUTER)) == TC_ACT_REDIRECT  # answered
    for frame in (arp_frame(1, A[1].pod_mac, "0.0.0.0", A[0]),  # probe
                  arp_frame(1, A[1].pod_mac, A[0], A[0]),  # gratuitous
                  arp_frame(2, A[1].pod_mac, A[0], ROUTER)):  # the pod answering the node
        assert node.run(frame) == TC_ACT_OK
    assert node.drops(DROP_INVALID_SIP) == node.drops(DROP_INVALID_SMAC) == 0
