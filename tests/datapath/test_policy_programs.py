"""Identity-based L3/L4 policy and conntrack in from_container / to_container, packet by packet
(BPF_PROG_TEST_RUN; every test loads the object into its own pin directory)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import replace

import pytest

from membrane.datapath.bpf.bpf_object import BpfObject
from membrane.datapath.bpf.syscalls import prog_test_run
from membrane.datapath.maps.conntrack import CT_EGRESS, CT_INGRESS, ConntrackMap
from membrane.datapath.maps.endpoints import (
    POLICY_EGRESS_ENFORCED,
    POLICY_INGRESS_ENFORCED,
    EndpointRecord,
    EndpointsMap,
)
from membrane.datapath.maps.ipcache import IpcacheEntry, IpcacheMap
from membrane.datapath.maps.metrics import METRIC_EGRESS, METRIC_INGRESS, MetricCounters, MetricsMap
from membrane.datapath.maps.policy import DIR_EGRESS, DIR_INGRESS, PolicyMap, PolicyRule
from membrane.model.datapath_codes import DROP_POLICY, DROP_POLICY_DENY
from tests.datapath.packets import ETH_P_IP, checksum, ethernet, icmp_echo, ipv4, send_as

pytestmark = pytest.mark.root

TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7
TCP, UDP, ICMP = 6, 17, 1
SYN, ACK, FIN, RST = 0x02, 0x10, 0x01, 0x04
ID_A, ID_B = 1001, 1002
A = ("10.200.0.10", EndpointRecord(ifindex=11, ep_id=1, pod_mac="0a:00:00:00:00:0a", lxc_mac="0e:00:00:00:00:0a",
                                   sec_identity=ID_A))
B = ("10.200.0.11", EndpointRecord(ifindex=12, ep_id=2, pod_mac="0a:00:00:00:00:0b", lxc_mac="0e:00:00:00:00:0b",
                                   sec_identity=ID_B))
WORLD_IP = "192.0.2.7"


def tcp(sport: int, dport: int, flags: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)


def udp(sport: int, dport: int, data: bytes = b"x") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data


def icmp_reply(ident: int, seq: int = 1, data: bytes = b"membrane") -> bytes:
    body = struct.pack("!BBHHH", 0, 0, 0, ident, seq) + data
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


class Node:
    def __init__(self, obj: BpfObject, pin_dir: str) -> None:
        self.obj = obj
        self.pin_dir = pin_dir
        self.endpoints = EndpointsMap.open(pin_dir)
        self.metrics = MetricsMap.open(pin_dir)
        self.ipcache = IpcacheMap.open(pin_dir)
        self.policy = PolicyMap.open(pin_dir)
        self.ct = ConntrackMap.open(pin_dir)

    def close(self) -> None:
        for handle in (self.endpoints, self.metrics, self.ipcache, self.policy, self.ct):
            handle.close()

    def enforce(self, pod: tuple[str, EndpointRecord], flags: int) -> None:
        self.endpoints.update(pod[0], replace(pod[1], flags=flags))

    def drops(self, reason: int, direction: int) -> int:
        return self.metrics.read().get((reason, direction), MetricCounters(0, 0)).packets

    def send(self, src: tuple[str, EndpointRecord], dst_ip: str, l4: bytes, proto: int) -> int:
        """A packet leaving pod ``src``: from_container's verdict."""
        frame = ethernet(src[1].lxc_mac, src[1].pod_mac, ETH_P_IP, ipv4(src[0], dst_ip, l4, proto=proto))
        send_as(self.endpoints, src[0])
        return prog_test_run(self.obj.program_fd("from_container"), frame)[0]

    def deliver(self, src_ip: str, dst: tuple[str, EndpointRecord], l4: bytes, proto: int) -> int:
        """A packet on its way into pod ``dst``: to_container's verdict."""
        frame = ethernet(dst[1].pod_mac, dst[1].lxc_mac, ETH_P_IP, ipv4(src_ip, dst[0], l4, ttl=63, proto=proto))
        return prog_test_run(self.obj.program_fd("to_container"), frame)[0]


@pytest.fixture
def node(pin_dir: str, lxc_object: str) -> Iterator[Node]:
    with BpfObject.open(lxc_object, pin_root=pin_dir) as obj:
        obj.load()
        n = Node(obj, pin_dir)
        try:
            for ip, record in (A, B):
                n.endpoints.update(ip, record)
                n.ipcache.update(f"{ip}/32", IpcacheEntry(record.sec_identity))
            yield n
        finally:
            n.close()


def allow_a_to_b(port: int = 80, end_port: int = 0, proto: int = TCP) -> PolicyRule:
    return PolicyRule(ep_id=B[1].ep_id, direction=DIR_INGRESS, identity=ID_A, protocol=proto, port=port,
                      end_port=end_port)


def test_without_enforcement_everything_passes(node: Node) -> None:
    assert node.deliver(A[0], B, tcp(40000, 80, SYN), TCP) == TC_ACT_OK
    assert node.send(A, WORLD_IP, udp(5353, 53), UDP) == TC_ACT_OK


def test_enforced_ingress_without_an_allow_drops_a_syn_as_policy_denied(node: Node) -> None:
    node.enforce(B, POLICY_INGRESS_ENFORCED)
    assert node.deliver(A[0], B, tcp(40000, 80, SYN), TCP) == TC_ACT_SHOT
    assert node.drops(DROP_POLICY, METRIC_INGRESS) == 1
    assert node.ct.rows() == []


def test_an_allow_lets_the_connection_and_its_replies_through(node: Node) -> None:
    # Both sides enforce both directions and only B's ingress allows anything.
    node.enforce(A, POLICY_INGRESS_ENFORCED | POLICY_EGRESS_ENFORCED)
    node.enforce(B, POLICY_INGRESS_ENFORCED | POLICY_EGRESS_ENFORCED)
    node.policy.update(allow_a_to_b())
    node.policy.update(PolicyRule(ep_id=A[1].ep_id, direction=DIR_EGRESS, identity=ID_B, protocol=TCP, port=80))

    assert node.send(A, B[0], tcp(40000, 80, SYN), TCP) == TC_ACT_REDIRECT  # A's egress
    assert node.deliver(A[0], B, tcp(40000, 80, SYN), TCP) == TC_ACT_OK  # B's ingress
    assert node.send(B, A[0], tcp(80, 40000, SYN | ACK), TCP) == TC_ACT_REDIRECT  # reply, B's egress
    assert node.deliver(B[0], A, tcp(80, 40000, SYN | ACK), TCP) == TC_ACT_OK  # reply, A's ingress
    assert node.send(A, B[0], tcp(40000, 80, ACK), TCP) == TC_ACT_REDIRECT
    assert node.deliver(A[0], B, tcp(40000, 80, ACK), TCP) == TC_ACT_OK
    assert node.drops(DROP_POLICY, METRIC_INGRESS) == node.drops(DROP_POLICY, METRIC_EGRESS) == 0

    rows = node.ct.rows()
    assert [(r.direction, r.saddr, r.sport, r.daddr, r.dport) for r in rows] == [
        (CT_INGRESS, A[0], 40000, B[0], 80), (CT_EGRESS, A[0], 40000, B[0], 80)]
    inbound = rows[0]
    assert (inbound.tx_packets, inbound.rx_packets, inbound.src_identity) == (2, 1, ID_A)
    assert inbound.tx_flags_seen == SYN | ACK and inbound.rx_flags_seen == SYN | ACK
    assert inbound.expires_in > 3600  # established: the long TCP lifetime
    assert "TCP IN 10.200.0.10:40000 -> 10.200.0.11:80" in inbound.describe()
    slot_counts = {slot.direction: state.packets for slot, state in node.policy.items().items()}
    assert slot_counts == {DIR_INGRESS: 1, DIR_EGRESS: 1}  # only the first packet was checked


def test_the_allow_is_for_that_identity_port_and_protocol_only(node: Node) -> None:
    node.enforce(B, POLICY_INGRESS_ENFORCED)
    node.policy.update(allow_a_to_b())
    assert node.deliver(WORLD_IP, B, tcp(40000, 80, SYN), TCP) == TC_ACT_SHOT  # world, not A
    assert node.deliver(A[0], B, tcp(40001, 81, SYN), TCP) == TC_ACT_SHOT
    assert node.deliver(A[0], B, udp(40002, 80), UDP) == TC_ACT_SHOT
    assert node.drops(DROP_POLICY, METRIC_INGRESS) == 3


@pytest.mark.parametrize(
    "deny",
    [
        pytest.param(PolicyRule(ep_id=2, direction=DIR_INGRESS, identity=ID_A, protocol=TCP, port=80, deny=True),
                     id="same-port"),
        pytest.param(PolicyRule(ep_id=2, direction=DIR_INGRESS, protocol=TCP, deny=True), id="any-identity-any-port"),
        pytest.param(PolicyRule(ep_id=2, direction=DIR_INGRESS, identity=ID_A, deny=True), id="identity-any-proto"),
        pytest.param(PolicyRule(ep_id=2, direction=DIR_INGRESS, protocol=TCP, port=64, end_port=127, deny=True),
                     id="port-range"),
    ],
)
def test_a_deny_wins_over_an_allow(node: Node, deny: PolicyRule) -> None:
    node.enforce(B, POLICY_INGRESS_ENFORCED)
    node.policy.update(allow_a_to_b())
    node.policy.update(deny)
    assert node.deliver(A[0], B, tcp(40000, 80, SYN), TCP) == TC_ACT_SHOT
    assert node.drops(DROP_POLICY_DENY, METRIC_INGRESS) == 1
    assert node.drops(DROP_POLICY, METRIC_INGRESS) == 0
    states = node.policy.items()
    assert sum(states[slot].packets for slot in deny.slots()) == 1  # the deny decided
    if allow_a_to_b().slots()[0] not in deny.slots():  # (the same-port deny replaced the allow)
        assert states[allow_a_to_b().slots()[0]].packets == 0


def test_removing_the_allow_keeps_established_connections_only(node: Node) -> None:
    node.enforce(B, POLICY_INGRESS_ENFORCED)
    node.policy.update(allow_a_to_b())
    assert node.deliver(A[0], B, tcp(40000, 80, SYN), TCP) == TC_ACT_OK
    assert node.send(B, A[0], tcp(80, 40000, SYN | ACK), TCP) == TC_ACT_REDIRECT

    assert node.policy.sync([]) == (0, 0, 1)
    assert node.deliver(A[0], B, tcp(40000, 80, ACK), TCP) == TC_ACT_OK  # established
    assert node.deliver(A[0], B, tcp(40001, 80, SYN), TCP) == TC_ACT_SHOT  # new
    assert node.drops(DROP_POLICY, METRIC_INGRESS) == 1


def test_rst_closes_the_connection_so_a_new_syn_is_checked_again(node: Node) -> None:
    node.enforce(B, POLICY_INGRESS_ENFORCED)
    node.policy.update(allow_a_to_b())
    assert node.deliver(A[0], B, tcp(40000, 80, SYN), TCP) == TC_ACT_OK
    assert node.send(B, A[0], tcp(80, 40000, SYN | ACK), TCP) == TC_ACT_REDIRECT
    assert node.send(B, A[0], tcp(80, 40000, RST | ACK), TCP) == TC_ACT_REDIRECT
    (row,) = [r for r in node.ct.rows() if r.direction == CT_INGRESS]
    assert row.closing and 0 < row.expires_in <= 10

    node.policy.delete(allow_a_to_b())
    assert node.deliver(A[0], B, tcp(40000, 80, SYN), TCP) == TC_ACT_SHOT  # same tuple, new connection
    assert node.drops(DROP_POLICY, METRIC_INGRESS) == 1


def test_fin_both_ways_shortens_the_lifetime(node: Node) -> None:
    assert node.deliver(A[0], B, tcp(40000, 80, SYN), TCP) == TC_ACT_OK
    assert node.send(B, A[0], tcp(80, 40000, SYN | ACK), TCP) == TC_ACT_REDIRECT
    assert node.deliver(A[0], B, tcp(40000, 80, FIN | ACK), TCP) == TC_ACT_OK
    (row,) = [r for r in node.ct.rows() if r.direction == CT_INGRESS]
    assert not row.closing and row.expires_in > 3600  # half closed
    assert node.send(B, A[0], tcp(80, 40000, FIN | ACK), TCP) == TC_ACT_REDIRECT
    (row,) = [r for r in node.ct.rows() if r.direction == CT_INGRESS]
    assert row.closing and 0 < row.expires_in <= 10


def test_icmp_echo_allowed_by_type_and_tracked_by_identifier(node: Node) -> None:
    node.enforce(A, POLICY_INGRESS_ENFORCED)
    node.enforce(B, POLICY_INGRESS_ENFORCED | POLICY_EGRESS_ENFORCED)
    node.policy.update(allow_a_to_b(port=8, proto=ICMP))  # ICMP type 8: echo request

    assert node.send(A, B[0], icmp_echo(ident=7), ICMP) == TC_ACT_REDIRECT
    assert node.deliver(A[0], B, icmp_echo(ident=7), ICMP) == TC_ACT_OK
    assert node.send(B, A[0], icmp_reply(ident=7), ICMP) == TC_ACT_REDIRECT  # reply by conntrack
    assert node.deliver(B[0], A, icmp_reply(ident=7), ICMP) == TC_ACT_OK
    # A reply nobody asked for (other identifier) is a new flow of type 0: not allowed.
    assert node.send(B, A[0], icmp_reply(ident=8), ICMP) == TC_ACT_SHOT
    assert node.drops(DROP_POLICY, METRIC_EGRESS) == 1
    # B pinging A is not allowed by A's (empty) ingress policy.
    assert node.deliver(B[0], A, icmp_echo(ident=9), ICMP) == TC_ACT_SHOT
    assert node.drops(DROP_POLICY, METRIC_INGRESS) == 1


def test_icmp_echo_denied(node: Node) -> None:
    node.enforce(B, POLICY_INGRESS_ENFORCED)
    node.policy.update(PolicyRule(ep_id=2, direction=DIR_INGRESS))  # allow everything from anyone
    node.policy.update(PolicyRule(ep_id=2, direction=DIR_INGRESS, identity=ID_A, protocol=ICMP, port=8, deny=True))
    assert node.deliver(A[0], B, icmp_echo(ident=7), ICMP) == TC_ACT_SHOT
    assert node.drops(DROP_POLICY_DENY, METRIC_INGRESS) == 1
    assert node.deliver(A[0], B, tcp(40000, 80, SYN), TCP) == TC_ACT_OK


@pytest.mark.parametrize(("port", "allowed"), [(7999, False), (8000, True), (8001, True), (8050, True),
                                               (8063, True), (8064, True), (8100, True), (8101, False)])
def test_port_range_entries(node: Node, port: int, allowed: bool) -> None:
    node.enforce(B, POLICY_INGRESS_ENFORCED)
    rule = allow_a_to_b(port=8000, end_port=8100)
    node.policy.update(rule)
    assert len(rule.slots()) > 1
    assert node.deliver(A[0], B, tcp(40000, port, SYN), TCP) == (TC_ACT_OK if allowed else TC_ACT_SHOT)


def test_egress_policy_of_the_source_endpoint(node: Node) -> None:
    node.enforce(A, POLICY_EGRESS_ENFORCED)
    node.policy.update(PolicyRule(ep_id=1, direction=DIR_EGRESS, identity=ID_B, protocol=TCP, port=443))
    node.policy.update(PolicyRule(ep_id=1, direction=DIR_EGRESS, identity=2, protocol=UDP, port=53))
    assert node.send(A, B[0], tcp(40000, 443, SYN), TCP) == TC_ACT_REDIRECT
    assert node.send(A, B[0], tcp(40001, 444, SYN), TCP) == TC_ACT_SHOT
    assert node.send(A, WORLD_IP, udp(5353, 53), UDP) == TC_ACT_OK  # world: no ipcache entry
    assert node.send(A, WORLD_IP, tcp(40002, 443, SYN), TCP) == TC_ACT_SHOT
    assert node.drops(DROP_POLICY, METRIC_EGRESS) == 2
    # A wider ipcache prefix gives the address an identity of its own.
    node.ipcache.update("192.0.2.0/24", IpcacheEntry(ID_B))
    assert node.send(A, WORLD_IP, tcp(40003, 443, SYN), TCP) == TC_ACT_OK


def test_sync_diffs_against_what_it_wrote_and_rereads_on_request(node: Node) -> None:
    """sync() remembers what it left in the map: another writer's slot survives a normal sync (no full
    read each time) and goes on a re-read; the synced slots themselves are exact either way."""
    ours, other = allow_a_to_b(80), allow_a_to_b(81)
    assert node.policy.shadow_age() == float("inf")
    assert node.policy.sync([ours]) == (1, 0, 0)
    assert 0 <= node.policy.shadow_age() < 60
    with PolicyMap.open(node.pin_dir) as second:  # another writer, e.g. a benchmark filler
        second.update(other)
    assert node.policy.sync([ours]) == (0, 0, 0)
    assert set(node.policy.items()) == set(ours.slots()) | set(other.slots())
    assert node.policy.sync([ours], reread=True) == (0, 0, 1)
    assert set(node.policy.items()) == set(ours.slots())
    node.policy.RESYNC_SECONDS = 0.0  # an old shadow is read again too
    with PolicyMap.open(node.pin_dir) as second:
        second.update(other)
    assert node.policy.sync([]) == (0, 0, 2)
    assert node.policy.items() == {}
