"""Egress gateway in the programs, packet by packet (BPF_PROG_TEST_RUN): from_container sends a
selected pod's packet into the VXLAN device toward the gateway or drops it (194, 204); to_netdev on
the gateway source-NATs it to the egress IP and from_netdev restores the pod on the reply."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from membrane.datapath.bpf.bpf_object import BpfObject
from membrane.datapath.bpf.syscalls import prog_test_run
from membrane.datapath.maps.egress import EgressMap
from membrane.datapath.maps.endpoints import EndpointsMap
from membrane.datapath.maps.metrics import METRIC_EGRESS, MetricsMap
from membrane.datapath.maps.nat import NAT_PORT_MAX, NAT_PORT_MIN, HostConfigMap, HostSettings
from membrane.datapath.maps.tunnel import TunnelConfigMap
from tests.datapath.packets import mac_bytes, send_as
from tests.datapath.test_host_programs import (  # noqa: F401
    NODE_IP,
    OUTSIDE,
    POD,
    TC_ACT_OK,
    TC_ACT_REDIRECT,
    TC_ACT_SHOT,
    checksums_ok,
    frame,
    host_object,
    tuple_of,
)

pytestmark = pytest.mark.root

GATEWAY = "192.168.10.102"
EGRESS_IP = "192.168.10.240"
REMOTE_POD = "10.201.0.7"
VXLAN_IFINDEX = 1  # any device: BPF_PROG_TEST_RUN only records the redirect


@dataclass
class Node:
    lxc: BpfObject
    host: BpfObject
    egress: EgressMap
    tunnel: TunnelConfigMap
    metrics: MetricsMap

    def run(self, obj: BpfObject, name: str, packet: bytes) -> tuple[int, bytes]:
        return prog_test_run(obj.program_fd(name), packet)

    def drops(self, reason: int) -> int:
        counters = self.metrics.read().get((reason, METRIC_EGRESS))
        return counters.packets if counters else 0


@pytest.fixture
def node(pin_dir: str, lxc_object: str, host_object: str) -> Iterator[Node]:  # noqa: F811
    with BpfObject.open(lxc_object, pin_root=pin_dir) as lxc, BpfObject.open(host_object, pin_root=pin_dir) as host:
        lxc.load()
        host.load()
        with EndpointsMap.open(pin_dir) as endpoints, EgressMap.open(pin_dir) as egress, \
                TunnelConfigMap.open(pin_dir) as tunnel, MetricsMap.open(pin_dir) as metrics, \
                HostConfigMap.open(pin_dir) as config:
            endpoints.update(*POD)
            send_as(endpoints, POD[0])
            config.write(HostSettings(NODE_IP, "10.0.0.0/8"))
            yield Node(lxc, host, egress, tunnel, metrics)


def _pod_frame(dst: str = OUTSIDE) -> bytes:
    """A TCP SYN as the pod sends it: to its lxc's MAC, from its own."""
    return mac_bytes(POD[1].lxc_mac) + mac_bytes(POD[1].pod_mac) + frame(POD[0], dst, 33000, 80)[12:]


def _from_pod(node: Node, dst: str = OUTSIDE) -> tuple[int, bytes]:
    return node.run(node.lxc, "from_container", _pod_frame(dst))


def test_no_row_takes_the_normal_path(node: Node) -> None:
    assert _from_pod(node)[0] == TC_ACT_OK


def test_a_selected_pod_goes_into_the_tunnel_toward_the_gateway(node: Node) -> None:
    node.egress.update(POD[0], "0.0.0.0/0", GATEWAY, EGRESS_IP)
    node.tunnel.write(VXLAN_IFINDEX)
    sent = _pod_frame()
    verdict, out = node.run(node.lxc, "from_container", sent)
    assert verdict == TC_ACT_REDIRECT
    assert out[22] == sent[22] - 1 and checksums_ok(out)  # TTL decremented, header checksum kept right
    assert tuple_of(out) == tuple_of(sent)  # not translated here: the gateway does that


def test_no_gateway_node_drops_with_194(node: Node) -> None:
    node.egress.update(POD[0], "203.0.113.0/24", "0.0.0.0", "0.0.0.0")
    node.tunnel.write(VXLAN_IFINDEX)
    before = node.drops(194)
    assert _from_pod(node)[0] == TC_ACT_SHOT
    assert node.drops(194) == before + 1
    assert _from_pod(node, "198.51.100.1")[0] == TC_ACT_OK  # outside the row's destination


def test_excluded_destination_takes_the_normal_path(node: Node) -> None:
    node.egress.update(POD[0], "0.0.0.0/0", GATEWAY, EGRESS_IP)
    node.egress.update(POD[0], "203.0.113.0/24", "0.0.0.1", "0.0.0.0")
    node.tunnel.write(VXLAN_IFINDEX)
    assert _from_pod(node)[0] == TC_ACT_OK
    assert _from_pod(node, "198.51.100.1")[0] == TC_ACT_REDIRECT


def test_this_node_as_gateway_without_egress_ip_drops_with_204(node: Node) -> None:
    node.egress.update(POD[0], "0.0.0.0/0", NODE_IP, "0.0.0.0")
    before = node.drops(204)
    assert _from_pod(node)[0] == TC_ACT_SHOT
    assert node.drops(204) == before + 1
    node.egress.update(POD[0], "0.0.0.0/0", NODE_IP, EGRESS_IP)
    assert _from_pod(node)[0] == TC_ACT_OK  # to the node device, where to_netdev translates it


def test_gateway_snats_to_the_egress_ip_and_restores_the_reply(node: Node) -> None:
    node.egress.update(REMOTE_POD, "0.0.0.0/0", NODE_IP, EGRESS_IP)
    verdict, out = node.run(node.host, "to_netdev", frame(REMOTE_POD, OUTSIDE, 33000, 80))
    assert verdict == TC_ACT_OK
    src, port, dst, dport = tuple_of(out)
    assert (src, dst, dport) == (EGRESS_IP, OUTSIDE, 80) and NAT_PORT_MIN <= port <= NAT_PORT_MAX
    assert checksums_ok(out)
    verdict, back = node.run(node.host, "from_netdev", frame(OUTSIDE, EGRESS_IP, 80, port, flags=0x12))
    assert verdict != TC_ACT_SHOT
    assert tuple_of(back) == (OUTSIDE, 80, REMOTE_POD, 33000)
    assert checksums_ok(back)
    # the local pod without a row is still masqueraded to the node IP
    assert tuple_of(node.run(node.host, "to_netdev", frame(POD[0], OUTSIDE, 33001, 80))[1])[0] == NODE_IP


def test_gateway_without_egress_ip_drops_at_to_netdev(node: Node) -> None:
    node.egress.update(REMOTE_POD, "0.0.0.0/0", NODE_IP, "0.0.0.0")
    assert node.run(node.host, "to_netdev", frame(REMOTE_POD, OUTSIDE, 33000, 80))[0] == TC_ACT_SHOT
    assert node.drops(204) >= 1


def test_rows_for_another_gateway_are_not_translated_here(node: Node) -> None:
    node.egress.update(REMOTE_POD, "0.0.0.0/0", GATEWAY, EGRESS_IP)
    packet = frame(REMOTE_POD, OUTSIDE, 33000, 80)
    assert node.run(node.host, "to_netdev", packet) == (TC_ACT_OK, packet)
    assert struct.unpack("!H", packet[12:14])[0] == 0x0800
