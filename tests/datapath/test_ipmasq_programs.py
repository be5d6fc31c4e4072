"""ip-masq-agent in to_netdev, packet by packet (BPF_PROG_TEST_RUN): with HOST_F_IP_MASQ_AGENT a
destination covered by mb_ipmasq_v4 keeps the pod's source, every other outside destination is
masqueraded as before; the map is what IpMasqMap.sync and membrane.model.ipmasq make of a config."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from membrane.datapath.bpf.bpf_object import BpfObject
from membrane.datapath.bpf.syscalls import prog_test_run
from membrane.datapath.maps.endpoints import EndpointsMap
from membrane.datapath.maps.ipmasq import IpMasqMap
from membrane.datapath.maps.nat import NAT_PORT_MAX, NAT_PORT_MIN, HostConfigMap, HostSettings, NatMap
from membrane.model.ipmasq import DEFAULT_NON_MASQUERADE_CIDRS, IpMasqConfig
from tests.datapath.test_host_programs import NODE_IP, POD, TC_ACT_OK, frame, host_object, tuple_of  # noqa: F401

pytestmark = pytest.mark.root

NATIVE = "10.0.0.0/8"


@dataclass
class Host:
    obj: BpfObject
    ipmasq: IpMasqMap
    config: HostConfigMap
    nat: NatMap

    def configure(self, ip_masq_agent: bool) -> None:
        self.config.write(HostSettings(NODE_IP, NATIVE, ip_masq_agent=ip_masq_agent))

    def source_after(self, dst: str) -> str:
        """The source address a pod's TCP SYN to ``dst`` leaves the node with."""
        verdict, out = prog_test_run(self.obj.program_fd("to_netdev"), frame(POD[0], dst, 33000, 80))
        assert verdict == TC_ACT_OK
        src, sport, _dst, _dport = tuple_of(out)
        if src == NODE_IP:
            assert NAT_PORT_MIN <= sport <= NAT_PORT_MAX
        else:
            assert sport == 33000
        return src


@pytest.fixture
def host(pin_dir: str, lxc_object: str, host_object: str) -> Iterator[Host]:  # noqa: F811
    with BpfObject.open(lxc_object, pin_root=pin_dir) as lxc, BpfObject.open(host_object, pin_root=pin_dir) as obj:
        lxc.load()
        obj.load()
        with EndpointsMap.open(pin_dir) as endpoints, IpMasqMap.open(pin_dir) as ipmasq, \
                HostConfigMap.open(pin_dir) as config, NatMap.open(pin_dir) as nat:
            endpoints.update(*POD)
            h = Host(obj, ipmasq, config, nat)
            h.configure(ip_masq_agent=True)
            assert config.read() == HostSettings(NODE_IP, NATIVE, ip_masq_agent=True)
            yield h


def test_a_non_masquerade_cidr_keeps_the_pod_source_and_others_get_the_node_ip(host: Host) -> None:
    assert host.ipmasq.sync(["203.0.113.12/32"]) == (1, 0)
    assert host.source_after("203.0.113.12") == POD[0]
    assert host.source_after("203.0.113.11") == NODE_IP
    assert host.source_after("10.7.0.1") == POD[0]  # ipv4NativeRoutingCIDR stays exempt, as in Cilium


def test_without_the_flag_the_map_is_not_consulted(host: Host) -> None:
    host.ipmasq.sync(["203.0.113.0/24"])
    host.configure(ip_masq_agent=False)
    assert host.source_after("203.0.113.12") == NODE_IP


@pytest.mark.parametrize("masq_link_local", [False, True])
def test_the_default_list_when_the_config_is_empty(host: Host, masq_link_local: bool) -> None:
    prefixes = IpMasqConfig(masq_link_local=masq_link_local).prefixes()
    host.ipmasq.sync(prefixes)
    assert [str(p) for p in host.ipmasq.prefixes()] == [str(p) for p in prefixes]
    for cidr in DEFAULT_NON_MASQUERADE_CIDRS:  # the last address of each default range
        last = str(ipaddress.IPv4Network(cidr).broadcast_address)
        assert host.source_after(last) == POD[0], cidr
    for outside in ("8.8.8.8", "100.128.0.1", "198.20.0.1", "11.0.0.1"):
        assert host.source_after(outside) == NODE_IP, outside
    assert host.source_after("169.254.1.1") == (NODE_IP if masq_link_local else POD[0])


def test_sync_replaces_the_prefixes_in_place(host: Host) -> None:
    host.ipmasq.sync(["203.0.113.0/24", "198.51.100.0/24"])
    assert host.ipmasq.sync(["203.0.113.0/24", "192.0.2.0/24"]) == (1, 1)
    assert [str(p) for p in host.ipmasq.prefixes()] == ["192.0.2.0/24", "203.0.113.0/24"]
    assert host.source_after("198.51.100.7") == NODE_IP
    assert host.ipmasq.sync([]) == (0, 2) and host.ipmasq.prefixes() == []
    assert host.source_after("203.0.113.7") == NODE_IP
