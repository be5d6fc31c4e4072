"""Hubble's from-network / to-network traces of the node-device programs (netdev_trace.h), packet by
packet (BPF_PROG_TEST_RUN), read back through EventMonitor, under monitor aggregation: at the default
(medium) to-network only for what the host firewall's conntrack reports (the node's own connections
while it is on: first packet, a new TCP flag, then every few seconds), never for a pod's packet, as
Cilium's cil_to_netdev; from-network never (as from lowest on); at none both for every packet."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from membrane.datapath.bpf.bpf_object import BpfObject
from membrane.datapath.bpf.syscalls import prog_test_run
from membrane.datapath.loader import compile_object, find_object
from membrane.datapath.maps.endpoints import EndpointRecord, EndpointsMap
from membrane.datapath.maps.events import DIRECTION_EGRESS, DIRECTION_INGRESS, ConfigMap, DatapathEvent
from membrane.datapath.maps.host_endpoint import HostEndpointMap, HostEndpointState
from membrane.datapath.maps.ipcache import IpcacheEntry, IpcacheMap
from membrane.datapath.maps.nat import HostConfigMap, HostSettings
from membrane.datapath.monitor import EventMonitor, set_events_enabled
from membrane.model.datapath_codes import (
    TRACE_FROM_NETWORK,
    TRACE_REASON_ESTABLISHED,
    TRACE_REASON_NEW,
    TRACE_REASON_REPLY,
    TRACE_TO_NETWORK,
)
from membrane.model.monitor_aggregation import LOW, NONE, MonitorAggregation
from tests.datapath.packets import ETH_P_IP, ethernet, ipv4, send_as

pytestmark = pytest.mark.root

TC_ACT_OK = 0
TCP, UDP = 6, 17
SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01
NODE_IP, OTHER_NODE = "192.168.10.100", "192.168.10.101"
NIC_MAC, PEER_MAC = "02:00:00:00:01:00", "02:00:00:00:02:00"
ID_HOST, ID_POD, ID_PEER, ID_REMOTE_NODE = 1, 1001, 1002, 6
POD = ("10.200.0.11", EndpointRecord(ifindex=12, ep_id=2, pod_mac="0a:00:00:00:00:0b", lxc_mac="0e:00:00:00:00:0b",
                                     sec_identity=ID_POD))
PEER = "10.201.0.7"  # a pod on another node (native routing: no masquerade towards it)


def tcp(sport: int, dport: int, flags: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)


def frame(src: str, dst: str, l4: bytes, proto: int = TCP) -> bytes:
    return ethernet(NIC_MAC, PEER_MAC, ETH_P_IP, ipv4(src, dst, l4, proto=proto))


@dataclass
class Node:
    obj: BpfObject
    lxc: BpfObject
    pin_dir: str
    monitor: EventMonitor
    received: list[DatapathEvent]

    def run(self, program: str, packet: bytes) -> int:
        return prog_test_run(self.obj.program_fd(program), packet)[0]

    def traces(self) -> list[tuple[int | None, int, int, int, int]]:
        """(observation point, source identity, destination identity, trace reason, direction)."""
        self.monitor.stop()
        return [(e.observation_point, e.src_identity, e.dst_identity, e.trace_reason, e.direction)
                for e in self.received if e.is_trace]


@pytest.fixture(scope="module")
def host_object(tmp_path_factory: pytest.TempPathFactory) -> str:
    try:
        return find_object("host")
    except FileNotFoundError:
        return compile_object("host", str(tmp_path_factory.mktemp("bpf")))


@pytest.fixture
def node(pin_dir: str, lxc_object: str, host_object: str) -> Iterator[Node]:
    with BpfObject.open(lxc_object, pin_root=pin_dir) as lxc, BpfObject.open(host_object, pin_root=pin_dir) as obj:
        lxc.load()
        obj.load()
        with EndpointsMap.open(pin_dir) as endpoints, IpcacheMap.open(pin_dir) as ipcache, \
                HostConfigMap.open(pin_dir) as config:
            endpoints.update(*POD)
            ipcache.update(f"{POD[0]}/32", IpcacheEntry(ID_POD))
            ipcache.update(f"{PEER}/32", IpcacheEntry(ID_PEER))
            ipcache.update(f"{OTHER_NODE}/32", IpcacheEntry(ID_REMOTE_NODE))
            ipcache.update(f"{NODE_IP}/32", IpcacheEntry(ID_HOST))
            config.write(HostSettings(NODE_IP, "10.0.0.0/8"))
        received: list[DatapathEvent] = []
        monitor = EventMonitor(pin_dir, received.append)
        monitor.start()
        try:
            yield Node(obj, lxc, pin_dir, monitor, received)
        finally:
            monitor.stop()


def test_at_the_default_level_a_pod_connection_leaving_is_not_traced(node: Node) -> None:
    """Cilium's cil_to_netdev sends its to-network trace with monitor 0 unless its host firewall's
    conntrack says otherwise: at medium nothing for a pod's packet, first packet included."""
    assert node.run("to_netdev", frame(POD[0], PEER, tcp(40000, 80, SYN))) == TC_ACT_OK
    for _ in range(5):
        assert node.run("to_netdev", frame(POD[0], PEER, tcp(40000, 80, ACK | PSH))) == TC_ACT_OK
    assert node.traces() == []


def test_at_the_default_level_the_node_own_traffic_is_not_traced_without_the_host_firewall(node: Node) -> None:
    assert node.run("to_netdev", frame(NODE_IP, OTHER_NODE, tcp(40010, 80, SYN))) == TC_ACT_OK
    assert node.traces() == []


def test_at_the_default_level_the_host_firewall_conntrack_reports_the_node_own_connection(node: Node) -> None:
    """Its first packet, each TCP flag the first time, not the rest of the stream."""
    with HostEndpointMap.open(node.pin_dir) as hep:
        hep.write(HostEndpointState(9))  # tracks every connection, filters nothing
    for flags in (SYN, ACK, ACK | PSH, ACK | PSH, ACK, ACK | PSH, ACK | FIN):
        assert node.run("to_netdev", frame(NODE_IP, OTHER_NODE, tcp(40011, 80, flags))) == TC_ACT_OK
    got = node.traces()
    assert got == [(TRACE_TO_NETWORK, ID_HOST, ID_REMOTE_NODE, TRACE_REASON_NEW, DIRECTION_EGRESS)] + \
        [(TRACE_TO_NETWORK, ID_HOST, ID_REMOTE_NODE, TRACE_REASON_ESTABLISHED, DIRECTION_EGRESS)] * 3, got


def aggregate(node: Node, level: int) -> None:
    with ConfigMap.open(node.pin_dir) as config:
        config.set_aggregation(MonitorAggregation(level))


def test_at_the_default_level_nothing_is_traced_where_a_packet_arrives(node: Node) -> None:
    """Medium, like lowest and low: no from-network trace (Cilium's trace.h, TRACE_AGGREGATE_RX)."""
    for _ in range(3):
        assert node.run("from_netdev", frame(PEER, POD[0], tcp(40000, 80, SYN))) == TC_ACT_OK
    assert node.traces() == []


def test_without_aggregation_every_arriving_packet_is_from_network(node: Node) -> None:
    aggregate(node, NONE)
    for _ in range(11):
        assert node.run("from_netdev", frame(PEER, POD[0], tcp(40000, 80, SYN))) == TC_ACT_OK
    got = node.traces()
    assert got == [(TRACE_FROM_NETWORK, ID_PEER, ID_POD, TRACE_REASON_NEW, DIRECTION_INGRESS)] * 11, got


def test_at_low_every_leaving_packet_is_to_network_and_none_arriving(node: Node) -> None:
    aggregate(node, LOW)
    for flags in (SYN, ACK, ACK | PSH, ACK | PSH, ACK):
        assert node.run("to_netdev", frame(POD[0], PEER, tcp(40000, 80, flags))) == TC_ACT_OK
    assert node.run("from_netdev", frame(PEER, POD[0], tcp(80, 40000, SYN | ACK))) == TC_ACT_OK
    got = node.traces()
    assert [t[0] for t in got] == [TRACE_TO_NETWORK] * 5, got


def test_conntrack_of_the_pod_gives_the_direction(node: Node) -> None:
    """The pod's from_container records its connection (CT_EGRESS): what leaves is established, the
    peer's answer coming back from the network a reply; both are the pod's egress connection."""
    aggregate(node, NONE)  # from-network too
    with EndpointsMap.open(node.pin_dir) as endpoints:
        send_as(endpoints, POD[0])
    syn = ethernet(POD[1].lxc_mac, POD[1].pod_mac, ETH_P_IP, ipv4(POD[0], PEER, tcp(40001, 80, SYN), proto=TCP))
    assert prog_test_run(node.lxc.program_fd("from_container"), syn)[0] == TC_ACT_OK  # to the stack
    assert node.run("to_netdev", frame(POD[0], PEER, tcp(40001, 80, ACK))) == TC_ACT_OK
    assert node.run("from_netdev", frame(PEER, POD[0], tcp(80, 40001, SYN | ACK))) == TC_ACT_OK
    got = [t for t in node.traces() if t[0] in (TRACE_TO_NETWORK, TRACE_FROM_NETWORK)]
    assert got == [(TRACE_TO_NETWORK, ID_POD, ID_PEER, TRACE_REASON_ESTABLISHED, DIRECTION_EGRESS),
                   (TRACE_FROM_NETWORK, ID_PEER, ID_POD, TRACE_REASON_REPLY, DIRECTION_EGRESS)], got


def test_with_host_routing_a_pod_packet_is_left_to_from_container(node: Node) -> None:
    """Below medium from_container redirects it to the device and writes its to-network trace itself
    (lxc.c): to_netdev writes none, but still one for the node's own packets."""
    aggregate(node, LOW)
    with HostConfigMap.open(node.pin_dir) as config:
        config.write(HostSettings(NODE_IP, "10.0.0.0/8", host_routing=True))
    assert node.run("to_netdev", frame(POD[0], PEER, tcp(40002, 80, SYN))) == TC_ACT_OK
    assert node.run("to_netdev", frame(NODE_IP, PEER, tcp(40003, 80, SYN))) == TC_ACT_OK
    got = node.traces()
    assert [(p, s) for p, s, _, _, _ in got] == [(TRACE_TO_NETWORK, ID_HOST)], got


def test_udp_and_the_node_own_traffic_are_traced_and_events_off_silences_them(node: Node, pin_dir: str) -> None:
    aggregate(node, LOW)
    node.run("to_netdev", frame(NODE_IP, OTHER_NODE, struct.pack("!HHHH", 5000, 53, 8, 0), proto=UDP))
    set_events_enabled(pin_dir, False)
    try:
        node.run("to_netdev", frame(NODE_IP, OTHER_NODE, struct.pack("!HHHH", 5001, 53, 8, 0), proto=UDP))
    finally:
        set_events_enabled(pin_dir, True)
    got = node.traces()
    assert [(p, s, d) for p, s, d, _, _ in got] == [(TRACE_TO_NETWORK, ID_HOST, ID_REMOTE_NODE)], got
