"""bpf/lib/host_firewall.h packet by packet (BPF_PROG_TEST_RUN on host.o): the host endpoint's ingress at
from_netdev and egress at to_netdev, with its own conntrack so replies pass, and nothing at all while
mb_host_ep names no endpoint."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from membrane.datapath.bpf.syscalls import prog_test_run_marked
from membrane.datapath.maps.host_endpoint import HostEndpointMap, HostEndpointState
from membrane.datapath.maps.ipcache import IpcacheEntry
from membrane.datapath.maps.policy import DIR_EGRESS, DIR_INGRESS, PolicyMap, PolicySlot, Verdict
from tests.datapath.test_host_programs import (  # noqa: F401  (fixtures)
    CLIENT,
    NODE_IP,
    OUTSIDE,
    TC_ACT_OK,
    TC_ACT_SHOT,
    TCP,
    Programs,
    frame,
    host_object,
    progs,
)

pytestmark = pytest.mark.root

HOST_EP = 4096
WORLD = 2
SYN, SYN_ACK, ACK = 0x02, 0x12, 0x10


@pytest.fixture
def host(progs: Programs, pin_dir: str) -> Iterator[tuple[HostEndpointMap, PolicyMap]]:  # noqa: F811
    progs.ipcache.update(f"{NODE_IP}/32", IpcacheEntry(1))  # the node's own address: host
    with HostEndpointMap.open(pin_dir) as hep, PolicyMap.open(pin_dir) as policy:
        yield hep, policy


def test_without_a_host_endpoint_nothing_is_filtered(progs: Programs, host: tuple) -> None:  # noqa: F811
    hep, _policy = host
    assert hep.read() == HostEndpointState()
    for name, packet in (("from_netdev", frame(CLIENT, NODE_IP, 40000, 9090)),
                         ("to_netdev", frame(NODE_IP, OUTSIDE, 40000, 80))):
        assert progs.run(name, packet) == (TC_ACT_OK, packet)


def test_ingress_allows_the_named_port_drops_others_and_keeps_allowed_connections(progs: Programs,  # noqa: F811
                                                                                  host: tuple) -> None:
    hep, policy = host
    policy.write_slot(PolicySlot(HOST_EP, DIR_INGRESS, WORLD, TCP, 8080, 16), Verdict())
    hep.write(HostEndpointState(HOST_EP, ingress=True))
    assert progs.run("from_netdev", frame(CLIENT, NODE_IP, 40000, 8080))[0] == TC_ACT_OK
    assert progs.run("from_netdev", frame(CLIENT, NODE_IP, 40001, 9090))[0] == TC_ACT_SHOT
    assert progs.run("from_netdev", frame(CLIENT, NODE_IP, 40001, 9090))[0] == TC_ACT_SHOT  # retried: still
    assert progs.run("to_netdev", frame(NODE_IP, CLIENT, 8080, 40000, flags=SYN_ACK))[0] == TC_ACT_OK
    assert progs.run("from_netdev", frame(CLIENT, NODE_IP, 40000, 8080, flags=ACK))[0] == TC_ACT_OK
    # Not the node's address: routed through, not the host's to decide.
    assert progs.run("from_netdev", frame(CLIENT, OUTSIDE, 40002, 9090))[0] == TC_ACT_OK
    # Enforcement off again: the same port passes.
    hep.write(HostEndpointState(HOST_EP))
    assert progs.run("from_netdev", frame(CLIENT, NODE_IP, 40003, 9090))[0] == TC_ACT_OK


def test_egress_filters_what_the_node_sends_and_its_replies_come_back(progs: Programs,  # noqa: F811
                                                                      host: tuple) -> None:
    hep, policy = host
    policy.write_slot(PolicySlot(HOST_EP, DIR_EGRESS, WORLD, TCP, 443, 16), Verdict())
    hep.write(HostEndpointState(HOST_EP, ingress=True, egress=True))  # ingress allows nothing at all
    assert progs.run("to_netdev", frame(NODE_IP, OUTSIDE, 50000, 443))[0] == TC_ACT_OK
    assert progs.run("to_netdev", frame(NODE_IP, OUTSIDE, 50001, 80))[0] == TC_ACT_SHOT
    # The reply of the allowed connection passes ingress by conntrack; an unsolicited SYN does not.
    assert progs.run("from_netdev", frame(OUTSIDE, NODE_IP, 443, 50000, flags=SYN_ACK))[0] == TC_ACT_OK
    assert progs.run("from_netdev", frame(OUTSIDE, NODE_IP, 443, 50002, flags=SYN))[0] == TC_ACT_SHOT
    # A pod's masqueraded traffic is not the node's: it leaves (translated) whatever the host allows.
    assert progs.run("to_netdev", frame("10.200.0.11", OUTSIDE, 33000, 80))[0] == TC_ACT_OK
    # The node's packet carrying host routing's fast-exit mark (bpf/lib/netdev_pass.h: any local
    # process may set a mark) still meets the host's egress policy.
    marked = prog_test_run_marked(progs.obj.program_fd("to_netdev"), frame(NODE_IP, OUTSIDE, 50003, 80), 0x0300)
    assert marked[0] == TC_ACT_SHOT
