"""to_netdev and the transparent proxies in tunnel routing (bpf/lib/proxy_tunnel.h), packet by packet
(BPF_PROG_TEST_RUN): a packet the stack sends with a local pod's address as its source towards another
node's pod CIDR goes into the VXLAN device (redirected, with the TTL one lower), not out of the node's
device, where no route to remote pods exists; the node's own and foreign-source packets are not
touched by it, and without tunnel routing nothing changes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from membrane.datapath.maps.tunnel import TunnelConfigMap, TunnelMap
from tests.datapath.test_host_programs import (  # noqa: F401  (the progs and host_object fixtures)
    POD,
    TC_ACT_OK,
    TC_ACT_REDIRECT,
    Programs,
    frame,
    host_object,
    progs,
)

pytestmark = pytest.mark.root

REMOTE_CIDR, REMOTE_NODE, REMOTE_POD = "10.201.0.0/24", "192.168.20.101", "10.201.0.7"
VXLAN_IFINDEX = 4242  # test runs do not carry a redirect out: any index will do


@pytest.fixture
def tunnelled(progs: Programs, pin_dir: str) -> Iterator[Programs]:  # noqa: F811 (the imported fixture)
    with TunnelMap.open(pin_dir) as tunnels, TunnelConfigMap.open(pin_dir) as config:
        tunnels.update(REMOTE_CIDR, REMOTE_NODE)
        config.write(VXLAN_IFINDEX)
        yield progs


def ttl(out: bytes) -> int:
    return out[14 + 8]


def test_a_proxys_packet_with_a_pods_address_goes_into_the_tunnel(tunnelled: Programs) -> None:
    sent = frame(POD[0], REMOTE_POD, 40000, 80)
    verdict, out = tunnelled.run("to_netdev", sent)
    assert verdict == TC_ACT_REDIRECT  # into cilium_vxlan, not onto the underlay
    assert ttl(out) == ttl(sent) - 1
    # an answer of the ingress proxy (source: the local server pod) to a client on the other node too
    assert tunnelled.run("to_netdev", frame(POD[0], REMOTE_POD, 80, 40000, flags=0x12))[0] == TC_ACT_REDIRECT


def test_other_sources_and_destinations_are_left_alone(tunnelled: Programs) -> None:
    assert tunnelled.run("to_netdev", frame("10.200.0.99", REMOTE_POD, 40000, 80))[0] == TC_ACT_OK  # no local pod
    assert tunnelled.run("to_netdev", frame(POD[0], "10.202.0.7", 40000, 80))[0] == TC_ACT_OK  # no tunnel there


def test_without_tunnel_routing_the_packet_leaves_by_the_device(progs: Programs) -> None:  # noqa: F811
    assert progs.run("to_netdev", frame(POD[0], REMOTE_POD, 40000, 80))[0] == TC_ACT_OK
