"""Trace, drop and policy-verdict events of from_container / to_container, packet by packet
(BPF_PROG_TEST_RUN), read back through EventMonitor (the ring buffer read through its mapping, epoll thread)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import replace

import pytest

from membrane.datapath.bpf.bpf_object import BpfObject
from membrane.datapath.bpf.syscalls import prog_test_run
from membrane.datapath.maps.endpoints import (
    POLICY_EGRESS_ENFORCED,
    POLICY_INGRESS_ENFORCED,
    EndpointRecord,
    EndpointsMap,
)
from membrane.datapath.maps.events import (
    DIRECTION_EGRESS,
    DIRECTION_INGRESS,
    EVENT_CAPTURE_LEN,
    ConfigMap,
    DatapathEvent,
)
from membrane.datapath.maps.ipcache import IpcacheEntry, IpcacheMap
from membrane.datapath.maps.policy import DIR_INGRESS, PolicyMap, PolicyRule
from membrane.datapath.monitor import EventMonitor, events_enabled, set_events_enabled
from membrane.model.datapath_codes import (
    EVENT_DROP,
    EVENT_POLICY_VERDICT,
    EVENT_TRACE,
    POLICY_ACTION_ALLOW,
    POLICY_ACTION_DENY,
    POLICY_MATCH_L3_L4,
    POLICY_MATCH_L3_ONLY,
    POLICY_MATCH_NONE,
    POLICY_MATCH_PROTO_ONLY,
    TRACE_FROM_LXC,
    TRACE_REASON_NEW,
    TRACE_REASON_REPLY,
    TRACE_TO_LXC,
    TRACE_TO_STACK,
)
from membrane.model.monitor_aggregation import LOW, MEDIUM, NONE, MonitorAggregation
from tests.datapath.packets import ETH_P_IP, ethernet, icmp_echo, ipv4, send_as

pytestmark = pytest.mark.root

TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7
TCP, UDP, ICMP = 6, 17, 1
SYN, ACK, FIN, PSH = 0x02, 0x10, 0x01, 0x08
ID_A, ID_B, ID_WORLD = 1001, 1002, 2
A = ("10.200.0.10", EndpointRecord(ifindex=11, ep_id=1, pod_mac="0a:00:00:00:00:0a", lxc_mac="0e:00:00:00:00:0a",
                                   sec_identity=ID_A))
B = ("10.200.0.11", EndpointRecord(ifindex=12, ep_id=2, pod_mac="0a:00:00:00:00:0b", lxc_mac="0e:00:00:00:00:0b",
                                   sec_identity=ID_B))
WORLD_IP = "192.0.2.7"


def tcp(sport: int, dport: int, flags: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0) + payload


class Node:
    """The object loaded in its own pin directory, two local pods A and B, and a monitor whose
    events ``events()`` returns (it stops the monitor, which drains the ring buffer first)."""

    def __init__(self, obj: BpfObject, pin_dir: str) -> None:
        self.obj = obj
        self.pin_dir = pin_dir
        self.endpoints = EndpointsMap.open(pin_dir)
        self.ipcache = IpcacheMap.open(pin_dir)
        self.policy = PolicyMap.open(pin_dir)
        self.received: list[DatapathEvent] = []
        self.monitor = EventMonitor(pin_dir, self.received.append)

    def close(self) -> None:
        self.monitor.stop()
        for handle in (self.endpoints, self.ipcache, self.policy):
            handle.close()

    def events(self) -> list[DatapathEvent]:
        self.monitor.stop()
        return list(self.received)

    def enforce(self, pod: tuple[str, EndpointRecord], flags: int) -> None:
        self.endpoints.update(pod[0], replace(pod[1], flags=flags))

    def frame_from(self, src: tuple[str, EndpointRecord], dst_ip: str, l4: bytes, proto: int) -> bytes:
        return ethernet(src[1].lxc_mac, src[1].pod_mac, ETH_P_IP, ipv4(src[0], dst_ip, l4, proto=proto))

    def send(self, src: tuple[str, EndpointRecord], dst_ip: str, l4: bytes, proto: int) -> int:
        """A packet leaving pod ``src``: from_container's verdict."""
        send_as(self.endpoints, src[0])
        return prog_test_run(self.obj.program_fd("from_container"), self.frame_from(src, dst_ip, l4, proto))[0]

    def deliver(self, src_ip: str, dst: tuple[str, EndpointRecord], l4: bytes, proto: int) -> int:
        """A packet on its way into pod ``dst``: to_container's verdict."""
        frame = ethernet(dst[1].pod_mac, dst[1].lxc_mac, ETH_P_IP, ipv4(src_ip, dst[0], l4, ttl=63, proto=proto))
        return prog_test_run(self.obj.program_fd("to_container"), frame)[0]

    def exchange(self, src: tuple[str, EndpointRecord], dst: tuple[str, EndpointRecord], l4: bytes,
                 proto: int = TCP) -> None:
        """A local packet from src to dst through both hooks."""
        assert self.send(src, dst[0], l4, proto) == TC_ACT_REDIRECT
        assert self.deliver(src[0], dst, l4, proto) == TC_ACT_OK


@pytest.fixture
def node(pin_dir: str, lxc_object: str) -> Iterator[Node]:
    with BpfObject.open(lxc_object, pin_root=pin_dir) as obj:
        obj.load()
        n = Node(obj, pin_dir)
        try:
            for ip, record in (A, B):
                n.endpoints.update(ip, record)
                n.ipcache.update(f"{ip}/32", IpcacheEntry(record.sec_identity))
            with ConfigMap.open(pin_dir) as config:  # every trace point, for these tests of trace semantics
                config.set_aggregation(MonitorAggregation(NONE))
            n.monitor.start()
            yield n
        finally:
            n.close()


def traces(events: list[DatapathEvent]) -> list[tuple[int | None, int, int, int, int]]:
    """(observation point, endpoint, source identity, destination identity, trace reason)."""
    return [(e.observation_point, e.ep_id, e.src_identity, e.dst_identity, e.trace_reason)
            for e in events if e.is_trace]


def test_a_local_tcp_handshake_is_traced_from_and_to_each_endpoint(node: Node) -> None:
    node.exchange(A, B, tcp(40000, 80, SYN))
    node.exchange(B, A, tcp(80, 40000, SYN | ACK))
    events = node.events()
    assert traces(events) == [
        (TRACE_FROM_LXC, 1, ID_A, ID_B, TRACE_REASON_NEW),
        (TRACE_TO_LXC, 2, ID_A, ID_B, TRACE_REASON_NEW),
        (TRACE_FROM_LXC, 2, ID_B, ID_A, TRACE_REASON_REPLY),
        (TRACE_TO_LXC, 1, ID_B, ID_A, TRACE_REASON_REPLY),
    ]
    assert [e.direction for e in events] == [DIRECTION_EGRESS, DIRECTION_INGRESS] * 2
    assert [e.is_reply for e in events] == [False, False, True, True]
    assert all(e.type == EVENT_TRACE and e.protocol == TCP for e in events)
    assert events[0].ktime_ns <= events[1].ktime_ns <= events[2].ktime_ns <= events[3].ktime_ns
    # The packet as the hook saw it: from_container before its L2 rewrite, to_container after.
    frame = node.frame_from(A, B[0], tcp(40000, 80, SYN), TCP)
    assert events[0].packet == frame and events[0].orig_len == len(frame)
    assert node.monitor.counters().received == 4


def test_traffic_to_the_stack_is_traced_to_stack(node: Node) -> None:
    assert node.send(A, WORLD_IP, icmp_echo(ident=7), ICMP) == TC_ACT_OK
    assert traces(node.events()) == [
        (TRACE_FROM_LXC, 1, ID_A, ID_WORLD, TRACE_REASON_NEW),
        (TRACE_TO_STACK, 1, ID_A, ID_WORLD, TRACE_REASON_NEW),
    ]


def test_a_policy_drop_reports_the_verdict_and_the_drop_with_reason_133(node: Node) -> None:
    node.enforce(B, POLICY_INGRESS_ENFORCED)
    assert node.deliver(A[0], B, tcp(40000, 80, SYN), TCP) == TC_ACT_SHOT
    verdict, drop = node.events()
    assert verdict.type == EVENT_POLICY_VERDICT
    assert (verdict.direction, verdict.match_type, verdict.action, verdict.drop_reason) == (
        DIRECTION_INGRESS, POLICY_MATCH_NONE, POLICY_ACTION_DENY, 133)
    assert (verdict.protocol, verdict.dport, verdict.ep_id, verdict.src_identity, verdict.dst_identity) == (
        TCP, 80, 2, ID_A, ID_B)
    assert drop.type == EVENT_DROP and drop.drop_reason == drop.subtype == 133
    assert (drop.direction, drop.ep_id, drop.src_identity, drop.dst_identity) == (DIRECTION_INGRESS, 2, ID_A, ID_B)
    assert drop.is_reply is None


def test_a_deny_rule_drop_is_reason_181_with_the_deny_match_type(node: Node) -> None:
    node.enforce(A, POLICY_EGRESS_ENFORCED)
    node.policy.update(PolicyRule(ep_id=1, direction=2, protocol=UDP, deny=True))
    assert node.send(A, B[0], struct.pack("!HHHH", 5353, 53, 9, 0) + b"x", UDP) == TC_ACT_SHOT
    events = node.events()
    assert [(e.type, e.subtype) for e in events] == [(EVENT_TRACE, TRACE_FROM_LXC), (EVENT_POLICY_VERDICT, 0),
                                                     (EVENT_DROP, 181)]
    verdict = events[1]
    assert (verdict.direction, verdict.match_type, verdict.action, verdict.dport) == (
        DIRECTION_EGRESS, POLICY_MATCH_PROTO_ONLY, POLICY_ACTION_DENY, 53)


def test_allowed_new_connections_report_an_allowed_verdict_once(node: Node) -> None:
    node.enforce(B, POLICY_INGRESS_ENFORCED)
    node.policy.update(PolicyRule(ep_id=2, direction=DIR_INGRESS, identity=ID_A, protocol=TCP, port=80))
    node.policy.update(PolicyRule(ep_id=2, direction=DIR_INGRESS, identity=ID_A, protocol=ICMP, port=8))
    node.exchange(A, B, tcp(40000, 80, SYN))
    node.exchange(A, B, tcp(40000, 80, ACK))  # established: no second verdict
    node.exchange(A, B, icmp_echo(ident=9), ICMP)
    verdicts = [e for e in node.events() if e.is_policy_verdict]
    assert [(v.action, v.match_type, v.protocol, v.dport, v.drop_reason, v.is_reply) for v in verdicts] == [
        (POLICY_ACTION_ALLOW, POLICY_MATCH_L3_L4, TCP, 80, 0, False),
        (POLICY_ACTION_ALLOW, POLICY_MATCH_L3_L4, ICMP, 8, 0, False),
    ]


def test_an_l3_only_allow_has_match_type_l3_only(node: Node) -> None:
    node.enforce(B, POLICY_INGRESS_ENFORCED)
    node.policy.update(PolicyRule(ep_id=2, direction=DIR_INGRESS, identity=ID_A))
    node.exchange(A, B, tcp(40000, 8080, SYN))
    (verdict,) = [e for e in node.events() if e.is_policy_verdict]
    assert verdict.match_type == POLICY_MATCH_L3_ONLY and verdict.action == POLICY_ACTION_ALLOW


STREAM_PACKETS = 3 + 2 * 100 + 2  # handshake, 100 requests and their ACKs, both FINs


def _stream(node: Node) -> list[DatapathEvent]:
    """A whole TCP connection A -> B through both hooks; the events it made."""
    node.exchange(A, B, tcp(40000, 80, SYN))
    node.exchange(B, A, tcp(80, 40000, SYN | ACK))
    node.exchange(A, B, tcp(40000, 80, ACK))
    for _ in range(100):
        node.exchange(A, B, tcp(40000, 80, PSH | ACK, b"data" * 100))
        node.exchange(B, A, tcp(80, 40000, ACK))
    node.exchange(A, B, tcp(40000, 80, FIN | ACK))
    node.exchange(B, A, tcp(80, 40000, FIN | ACK))
    events = node.events()
    assert all(e.is_trace for e in events)
    return events


@pytest.mark.parametrize("level,per_packet", [(NONE, [TRACE_FROM_LXC, TRACE_TO_LXC]), (LOW, [TRACE_TO_LXC])],
                         ids=["none", "low"])
def test_below_medium_every_packet_is_traced(node: Node, level: int, per_packet: list[int]) -> None:
    """none: at both hooks; low (and lowest): not where the packet is received (from-endpoint)."""
    with ConfigMap.open(node.pin_dir) as config:
        config.set_aggregation(MonitorAggregation(level))
    events = _stream(node)
    assert [e.observation_point for e in events] == per_packet * STREAM_PACKETS


def test_at_medium_an_established_stream_is_aggregated_to_a_handful_of_traces(node: Node) -> None:
    with ConfigMap.open(node.pin_dir) as config:
        config.set_aggregation(MonitorAggregation())  # Cilium's default: medium, 5 s, all flags
    events = _stream(node)
    # to-endpoint only: SYN, SYN-ACK, the handshake ACK, the first data (PSH not seen yet in its
    # direction) and each side's FIN. One extra report per direction may come from the 5 s interval
    # if the machine is very slow.
    reported = [(e.observation_point, e.trace_reason) for e in events]
    assert 6 <= len(reported) <= 6 + 2, reported
    assert {point for point, _ in reported} == {TRACE_TO_LXC}
    assert reported[:2] == [(TRACE_TO_LXC, TRACE_REASON_NEW), (TRACE_TO_LXC, TRACE_REASON_REPLY)]
    assert reported[-1] == (TRACE_TO_LXC, TRACE_REASON_REPLY)
    assert sum(1 for e in events if e.packet[14 + 20 + 13] & FIN) == 2
    assert 1 <= sum(1 for e in events if e.packet[14 + 20 + 13] & PSH) <= 2
    assert node.monitor.counters().received == len(events)


def test_monitor_flags_choose_the_tcp_flags_whose_first_sighting_is_reported(node: Node) -> None:
    """bpf.monitorFlags=syn,fin,rst: the handshake ACK and the first data are not reported."""
    with ConfigMap.open(node.pin_dir) as config:
        config.set_aggregation(MonitorAggregation(MEDIUM, 5, 0x01 | 0x02 | 0x04))
    events = _stream(node)
    flags = [e.packet[14 + 20 + 13] for e in events]
    assert SYN in flags and SYN | ACK in flags and flags.count(FIN | ACK) == 2, flags
    assert len(events) <= 4 + 2 and not any(f == ACK or f & PSH for f in flags), flags


def test_drops_are_never_aggregated(node: Node) -> None:
    node.enforce(B, POLICY_INGRESS_ENFORCED)
    for _ in range(5):
        assert node.deliver(A[0], B, tcp(40000, 80, SYN), TCP) == TC_ACT_SHOT
    events = node.events()
    assert sum(e.is_drop for e in events) == 5 and sum(e.is_policy_verdict for e in events) == 5


def test_a_malformed_packet_is_dropped_as_invalid_with_an_event(node: Node) -> None:
    frame = bytearray(node.frame_from(A, B[0], tcp(40000, 80, SYN), TCP))
    frame[14] = 0x65  # IP version 6 in an IPv4 ethertype
    send_as(node.endpoints, A[0])
    assert prog_test_run(node.obj.program_fd("from_container"), bytes(frame))[0] == TC_ACT_SHOT
    (drop,) = node.events()
    assert drop.is_drop and drop.drop_reason == 134 and drop.packet == bytes(frame)


def test_switching_events_off_silences_the_datapath(node: Node) -> None:
    assert events_enabled(node.pin_dir)
    set_events_enabled(node.pin_dir, False)
    assert not events_enabled(node.pin_dir)
    node.enforce(B, POLICY_INGRESS_ENFORCED)
    assert node.deliver(A[0], B, tcp(40000, 80, SYN), TCP) == TC_ACT_SHOT  # policy still works
    assert node.send(A, WORLD_IP, icmp_echo(ident=3), ICMP) == TC_ACT_OK
    set_events_enabled(node.pin_dir, True)
    assert node.send(A, WORLD_IP, icmp_echo(ident=4), ICMP) == TC_ACT_OK
    events = node.events()
    assert [e.dst_identity for e in events] == [ID_WORLD, ID_WORLD]  # only the packet sent after "on"
    counters = node.monitor.counters()
    assert (counters.emitted, counters.lost, counters.received, counters.delivered) == (2, 0, 2, 2)


def test_large_packets_are_captured_up_to_128_bytes(node: Node) -> None:
    payload = bytes(range(200)) * 5
    assert node.send(A, WORLD_IP, struct.pack("!HHHH", 5000, 6000, 8 + len(payload), 0) + payload, UDP) == TC_ACT_OK
    frame = node.frame_from(A, WORLD_IP, struct.pack("!HHHH", 5000, 6000, 8 + len(payload), 0) + payload, UDP)
    events = node.events()
    assert [len(e.packet) for e in events] == [EVENT_CAPTURE_LEN, EVENT_CAPTURE_LEN]
    assert events[0].packet == frame[:EVENT_CAPTURE_LEN] and events[0].orig_len == len(frame)


def test_by_default_a_sent_packet_is_traced_where_it_leaves_not_where_it_enters(node: Node) -> None:
    """Cilium's default aggregation: no from-endpoint trace; the to-endpoint one still says all."""
    with ConfigMap.open(node.pin_dir) as config:
        config.set_aggregation(MonitorAggregation())
        assert config.aggregation() == MonitorAggregation(MEDIUM, 5, 0xFF) and config.events_enabled()
    node.exchange(A, B, tcp(40000, 80, SYN))
    node.exchange(B, A, tcp(80, 40000, SYN | ACK))
    assert node.send(A, WORLD_IP, tcp(40001, 443, SYN), TCP) == TC_ACT_OK
    assert traces(node.events()) == [
        (TRACE_TO_LXC, 2, ID_A, ID_B, TRACE_REASON_NEW),
        (TRACE_TO_LXC, 1, ID_B, ID_A, TRACE_REASON_REPLY),
        (TRACE_TO_STACK, 1, ID_A, ID_WORLD, TRACE_REASON_NEW),
    ]
