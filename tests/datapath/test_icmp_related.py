"""ICMP errors related to a tracked connection pass without an allow (Cilium's CT_RELATED), in
both directions; errors about untracked tuples are still policy's to decide, and none creates or
refreshes an entry (BPF_PROG_TEST_RUN)."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from membrane.datapath.bpf.bpf_object import BpfObject
from membrane.datapath.maps.endpoints import POLICY_EGRESS_ENFORCED, POLICY_INGRESS_ENFORCED
from membrane.datapath.maps.ipcache import IpcacheEntry
from membrane.datapath.maps.metrics import METRIC_EGRESS, METRIC_INGRESS
from membrane.datapath.maps.policy import DIR_EGRESS, DIR_INGRESS, PolicyRule
from membrane.model.datapath_codes import DROP_POLICY
from tests.datapath.packets import checksum, icmp_echo, ipv4
from tests.datapath.test_policy_programs import (
    ICMP,
    SYN,
    TC_ACT_OK,
    TC_ACT_SHOT,
    TCP,
    UDP,
    WORLD_IP,
    A,
    B,
    Node,
    tcp,
    udp,
)

pytestmark = pytest.mark.root

ROUTER = "198.51.100.1"
DEST_UNREACH, TIME_EXCEEDED, PARAMETER_PROBLEM = 3, 11, 12
PORT_UNREACH, FRAG_NEEDED = 3, 4


@pytest.fixture
def node(pin_dir: str, lxc_object: str) -> Iterator[Node]:
    """Pods A and B on one node, in the ipcache (as test_policy_programs' node)."""
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


def icmp_error(quoted: bytes, type_: int = DEST_UNREACH, code: int = PORT_UNREACH, mtu: int = 0) -> bytes:
    """An ICMP error quoting ``quoted`` (an IPv4 packet): its header and first 8 bytes of payload."""
    body = struct.pack("!BBHHH", type_, code, 0, 0, mtu) + quoted[:28]
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


def ct_state(node: Node) -> list[tuple]:
    return [(r.direction, r.protocol, r.saddr, r.sport, r.daddr, r.dport, r.tx_packets, r.rx_packets, r.expires_in)
            for r in node.ct.rows(include_expired=True)]


def allow_egress(port: int, proto: int) -> PolicyRule:
    return PolicyRule(ep_id=A[1].ep_id, direction=DIR_EGRESS, identity=2, protocol=proto, port=port)


@pytest.mark.parametrize(("type_", "code"), [(DEST_UNREACH, PORT_UNREACH), (DEST_UNREACH, FRAG_NEEDED),
                                             (TIME_EXCEEDED, 0), (PARAMETER_PROBLEM, 0)])
def test_error_about_an_egress_connection_reaches_the_sender(node: Node, type_: int, code: int) -> None:
    node.enforce(A, POLICY_INGRESS_ENFORCED | POLICY_EGRESS_ENFORCED)
    node.policy.update(allow_egress(53, UDP))
    assert node.send(A, WORLD_IP, udp(5353, 53), UDP) == TC_ACT_OK
    before = ct_state(node)
    quoted = ipv4(A[0], WORLD_IP, udp(5353, 53), proto=UDP)
    for src in (WORLD_IP, ROUTER):  # from the destination itself or from a router on the way
        assert node.deliver(src, A, icmp_error(quoted, type_, code, mtu=1400), ICMP) == TC_ACT_OK
    assert node.drops(DROP_POLICY, METRIC_INGRESS) == 0
    assert ct_state(node) == before  # no new entry, nothing accounted


def test_error_about_an_untracked_tuple_is_left_to_policy(node: Node) -> None:
    node.enforce(A, POLICY_INGRESS_ENFORCED | POLICY_EGRESS_ENFORCED)
    node.policy.update(allow_egress(53, UDP))
    assert node.send(A, WORLD_IP, udp(5353, 53), UDP) == TC_ACT_OK
    for quoted in (ipv4(A[0], WORLD_IP, udp(5354, 53), proto=UDP),  # another source port
                   ipv4(A[0], WORLD_IP, tcp(5353, 53, SYN), proto=TCP),  # another protocol
                   ipv4(B[0], WORLD_IP, udp(5353, 53), proto=UDP)):  # someone else's packet
        assert node.deliver(WORLD_IP, A, icmp_error(quoted), ICMP) == TC_ACT_SHOT
    assert node.drops(DROP_POLICY, METRIC_INGRESS) == 3
    assert len(node.ct.rows(include_expired=True)) == 1


def test_error_about_a_tcp_connection_and_about_a_ping(node: Node) -> None:
    node.enforce(A, POLICY_INGRESS_ENFORCED | POLICY_EGRESS_ENFORCED)
    node.policy.update(allow_egress(443, TCP))
    node.policy.update(allow_egress(8, ICMP))
    assert node.send(A, WORLD_IP, tcp(40000, 443, SYN), TCP) == TC_ACT_OK
    assert node.send(A, WORLD_IP, icmp_echo(ident=77), ICMP) == TC_ACT_OK
    tcp_quote = ipv4(A[0], WORLD_IP, tcp(40000, 443, SYN), proto=TCP)
    ping_quote = ipv4(A[0], WORLD_IP, icmp_echo(ident=77), proto=ICMP)
    assert node.deliver(ROUTER, A, icmp_error(tcp_quote, DEST_UNREACH, FRAG_NEEDED, 1400), ICMP) == TC_ACT_OK
    assert node.deliver(ROUTER, A, icmp_error(ping_quote, TIME_EXCEEDED, 0), ICMP) == TC_ACT_OK
    other_ping = ipv4(A[0], WORLD_IP, icmp_echo(ident=78), proto=ICMP)
    assert node.deliver(ROUTER, A, icmp_error(other_ping, TIME_EXCEEDED, 0), ICMP) == TC_ACT_SHOT


def test_error_the_endpoint_sends_about_an_ingress_connection_leaves(node: Node) -> None:
    """B's kernel answers a datagram that ingress allowed with port unreachable: egress lets it out."""
    node.enforce(B, POLICY_INGRESS_ENFORCED | POLICY_EGRESS_ENFORCED)
    node.policy.update(PolicyRule(ep_id=B[1].ep_id, direction=DIR_INGRESS, identity=2, protocol=UDP, port=9999))
    assert node.deliver(WORLD_IP, B, udp(40000, 9999), UDP) == TC_ACT_OK
    quoted = ipv4(WORLD_IP, B[0], udp(40000, 9999), ttl=63, proto=UDP)
    assert node.send(B, WORLD_IP, icmp_error(quoted), ICMP) == TC_ACT_OK
    # Unrelated (another port): B's egress has no allow for ICMP.
    other = ipv4(WORLD_IP, B[0], udp(40000, 9998), ttl=63, proto=UDP)
    assert node.send(B, WORLD_IP, icmp_error(other), ICMP) == TC_ACT_SHOT
    assert node.drops(DROP_POLICY, METRIC_EGRESS) == 1
