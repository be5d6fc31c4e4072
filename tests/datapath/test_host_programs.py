"""The node-device programs packet by packet (BPF_PROG_TEST_RUN): NodePort to local and remote
backends, externalTrafficPolicy=Local, masquerade and their reverse translations, with checksums
checked by full recomputation."""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from membrane.datapath.bpf.bpf_object import BpfObject
from membrane.datapath.bpf.syscalls import prog_test_run, prog_test_run_marked
from membrane.datapath.loader import compile_object, find_object
from membrane.datapath.maps.endpoints import EndpointRecord, EndpointsMap
from membrane.datapath.maps.ipcache import IpcacheEntry, IpcacheMap
from membrane.datapath.maps.lb import LB_F_ETP_LOCAL, Backend, Frontend, LBMaps
from membrane.datapath.maps.metrics import METRIC_INGRESS, MetricCounters, MetricsMap
from membrane.datapath.maps.nat import (
    NAT_DIR_IN,
    NAT_DIR_OUT,
    NAT_DIR_REV_DNAT,
    NAT_PORT_MAX,
    NAT_PORT_MIN,
    HostConfigMap,
    HostSettings,
    NatMap,
)
from tests.datapath.packets import ETH_P_IP, checksum, ethernet, ip_bytes, ipv4

pytestmark = pytest.mark.root

TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7
DROP_NO_SERVICE = 158
ICMP, TCP, UDP = 1, 6, 17
NODE_IP, CLIENT, NODEPORT = "192.168.10.100", "192.168.10.200", 30080
OTHER_NODE = "192.168.10.101"
NIC_MAC, PEER_MAC = "02:00:00:00:01:00", "02:00:00:00:02:00"
POD = ("10.200.0.11", EndpointRecord(ifindex=12, ep_id=2, pod_mac="0a:00:00:00:00:0b", lxc_mac="0e:00:00:00:00:0b"))
LOCAL = Backend(1, POD[0], 8080)
REMOTE = Backend(2, "10.201.0.7", 9090)
OUTSIDE = "203.0.113.9"


@pytest.fixture(scope="module")
def host_object(tmp_path_factory: pytest.TempPathFactory) -> str:
    try:
        return find_object("host")
    except FileNotFoundError:
        return compile_object("host", str(tmp_path_factory.mktemp("bpf")))


@dataclass
class Programs:
    obj: BpfObject
    lb: LBMaps
    nat: NatMap
    ipcache: IpcacheMap
    metrics: MetricsMap

    def run(self, name: str, frame: bytes) -> tuple[int, bytes]:
        return prog_test_run(self.obj.program_fd(name), frame)

    def counters(self, reason: int, direction: int) -> MetricCounters:
        return self.metrics.read().get((reason, direction), MetricCounters(0, 0))


@pytest.fixture
def progs(pin_dir: str, lxc_object: str, host_object: str) -> Iterator[Programs]:
    # lxc.o first, as the agent does; host.o reuses its pinned maps by name.
    with BpfObject.open(lxc_object, pin_root=pin_dir) as lxc, BpfObject.open(host_object, pin_root=pin_dir) as obj:
        lxc.load()
        obj.load()
        with EndpointsMap.open(pin_dir) as endpoints, LBMaps.open(pin_dir) as lb, NatMap.open(pin_dir) as nat, \
                IpcacheMap.open(pin_dir) as ipcache, MetricsMap.open(pin_dir) as metrics, \
                HostConfigMap.open(pin_dir) as config:
            endpoints.update(*POD)
            config.write(HostSettings(NODE_IP, "10.0.0.0/8"))
            assert config.read() == HostSettings(NODE_IP, "10.0.0.0/8")
            yield Programs(obj, lb, nat, ipcache, metrics)


def _l4(proto: int, src: str, dst: str, sport: int, dport: int, payload: bytes, flags: int) -> bytes:
    if proto == ICMP:  # echo request (sport = identifier) or reply (flags == 0)
        body = struct.pack("!BBHHH", 8 if flags else 0, 0, 0, sport, 1) + payload
        return body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    if proto == TCP:
        header = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, flags, 65535, 0, 0)
        offset = 16
    else:
        header = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
        offset = 6
    segment = header + payload
    pseudo = ip_bytes(src) + ip_bytes(dst) + struct.pack("!BBH", 0, proto, len(segment))
    value = checksum(pseudo + segment) or (0xFFFF if proto == UDP else 0)
    return segment[:offset] + struct.pack("!H", value) + segment[offset + 2:]


def frame(src: str, dst: str, sport: int, dport: int, proto: int = TCP, payload: bytes = b"hello",
          flags: int = 0x02, ident: int = 0x1234) -> bytes:
    segment = _l4(proto, src, dst, sport, dport, payload, flags)
    return ethernet(NIC_MAC, PEER_MAC, ETH_P_IP, ipv4(src, dst, segment, proto=proto, ident=ident))


def checksums_ok(out: bytes) -> bool:
    ihl = (out[14] & 0x0F) * 4
    total = struct.unpack("!H", out[16:18])[0]
    segment = out[14 + ihl:14 + total]
    if checksum(out[14:14 + ihl]) != 0:
        return False
    if out[23] == ICMP:
        return checksum(segment) == 0
    pseudo = out[26:34] + struct.pack("!BBH", 0, out[23], len(segment))
    return checksum(pseudo + segment) == 0


def tuple_of(out: bytes) -> tuple[str, int, str, int]:
    if out[23] == ICMP:
        ident = struct.unpack("!H", out[38:40])[0]
        sport = dport = ident
    else:
        sport, dport = struct.unpack("!HH", out[34:38])
    return str(ipaddress.IPv4Address(out[26:30])), sport, str(ipaddress.IPv4Address(out[30:34])), dport


def nodeport(proto: str = "TCP") -> Frontend:
    return Frontend(NODE_IP, NODEPORT, proto)


# -- NodePort, local backend ---------------------------------------------------------------------


@pytest.mark.parametrize("proto", [TCP, UDP], ids=["tcp", "udp"])
def test_nodeport_to_a_local_backend_goes_to_its_lxc_and_replies_come_from_the_frontend(progs: Programs,
                                                                                      proto: int) -> None:
    name = "TCP" if proto == TCP else "UDP"
    progs.lb.upsert_service(nodeport(name), [Backend(1, POD[0], 8080, name)], rev_nat_index=5)

    verdict, out = progs.run("from_netdev", frame(CLIENT, NODE_IP, 40000, NODEPORT, proto=proto))
    assert verdict == TC_ACT_REDIRECT
    assert tuple_of(out) == (CLIENT, 40000, POD[0], 8080)  # the client's address is kept
    assert out[0:6] == bytes.fromhex(POD[1].pod_mac.replace(":", ""))
    assert out[6:12] == bytes.fromhex(POD[1].lxc_mac.replace(":", ""))
    assert out[22] == 63 and checksums_ok(out)

    verdict, back = progs.run("to_netdev", frame(POD[0], CLIENT, 8080, 40000, proto=proto, flags=0x12))
    assert verdict == TC_ACT_OK
    assert tuple_of(back) == (NODE_IP, NODEPORT, CLIENT, 40000)
    assert checksums_ok(back)
    rev = [r for r in progs.nat.entries() if r.direction == NAT_DIR_REV_DNAT]
    assert [(r.saddr, r.sport, r.daddr, r.dport, r.addr, r.port) for r in rev] == [
        (POD[0], 8080, CLIENT, 40000, NODE_IP, NODEPORT)]


def test_another_connection_of_the_backend_pod_is_not_given_the_frontend(progs: Programs) -> None:
    progs.lb.upsert_service(nodeport(), [LOCAL], rev_nat_index=5)
    progs.run("from_netdev", frame(CLIENT, NODE_IP, 40000, NODEPORT))
    src, port, _, _ = tuple_of(progs.run("to_netdev", frame(POD[0], CLIENT, 8080, 40001, flags=0x12))[1])
    assert src == NODE_IP and NAT_PORT_MIN <= port <= NAT_PORT_MAX  # masqueraded, not reverse-DNATed
    inside = frame(POD[0], "10.1.2.3", 8080, 40000, flags=0x12)
    assert progs.run("to_netdev", inside) == (TC_ACT_OK, inside)


# -- NodePort, remote backend (SNAT) ---------------------------------------------------------------


@pytest.mark.parametrize("proto", [TCP, UDP], ids=["tcp", "udp"])
def test_nodeport_to_a_remote_backend_is_snated_and_the_reply_restored(progs: Programs, proto: int) -> None:
    name = "TCP" if proto == TCP else "UDP"
    progs.lb.upsert_service(nodeport(name), [Backend(2, REMOTE.address, REMOTE.port, name)], rev_nat_index=6)

    verdict, out = progs.run("from_netdev", frame(CLIENT, NODE_IP, 40000, NODEPORT, proto=proto))
    assert verdict == TC_ACT_REDIRECT  # back out of the device, next hop from the FIB
    src, nat_port, dst, dport = tuple_of(out)
    assert (src, dst, dport) == (NODE_IP, REMOTE.address, REMOTE.port)
    assert NAT_PORT_MIN <= nat_port <= NAT_PORT_MAX
    assert checksums_ok(out)

    # later packets of the connection keep the port
    again = progs.run("from_netdev", frame(CLIENT, NODE_IP, 40000, NODEPORT, proto=proto, flags=0x10))[1]
    assert tuple_of(again) == (NODE_IP, nat_port, REMOTE.address, REMOTE.port)

    verdict, back = progs.run("from_netdev", frame(REMOTE.address, NODE_IP, REMOTE.port, nat_port, proto=proto,
                                                   flags=0x12))
    assert verdict == TC_ACT_REDIRECT
    assert tuple_of(back) == (NODE_IP, NODEPORT, CLIENT, 40000)
    assert checksums_ok(back)
    kinds = sorted(r.direction for r in progs.nat.entries())
    assert kinds == [NAT_DIR_OUT, NAT_DIR_IN]


def test_different_clients_get_different_ports(progs: Programs) -> None:
    progs.lb.upsert_service(nodeport(), [REMOTE], rev_nat_index=6)
    ports = {tuple_of(progs.run("from_netdev", frame(f"192.168.10.{200 + i}", NODE_IP, 40000, NODEPORT))[1])[1]
             for i in range(20)}
    assert len(ports) == 20


def test_etp_local_without_a_local_backend_drops(progs: Programs) -> None:
    progs.lb.upsert_service(nodeport(), [REMOTE], rev_nat_index=6, flags=LB_F_ETP_LOCAL)
    before = progs.counters(DROP_NO_SERVICE, METRIC_INGRESS)
    assert progs.run("from_netdev", frame(CLIENT, NODE_IP, 40000, NODEPORT))[0] == TC_ACT_SHOT
    assert progs.counters(DROP_NO_SERVICE, METRIC_INGRESS).packets == before.packets + 1
    assert list(progs.nat.entries()) == []


def test_etp_local_with_a_local_backend_keeps_the_client_address(progs: Programs) -> None:
    progs.lb.upsert_service(nodeport(), [LOCAL], rev_nat_index=5, flags=LB_F_ETP_LOCAL)
    verdict, out = progs.run("from_netdev", frame(CLIENT, NODE_IP, 40000, NODEPORT))
    assert verdict == TC_ACT_REDIRECT and tuple_of(out) == (CLIENT, 40000, POD[0], 8080)


def test_a_frontend_without_backends_drops_with_158(progs: Programs) -> None:
    progs.lb.upsert_service(nodeport(), [], rev_nat_index=5)
    before = progs.counters(DROP_NO_SERVICE, METRIC_INGRESS)
    assert progs.run("from_netdev", frame(CLIENT, NODE_IP, 40000, NODEPORT))[0] == TC_ACT_SHOT
    assert progs.counters(DROP_NO_SERVICE, METRIC_INGRESS).packets == before.packets + 1


def test_other_traffic_to_the_node_passes_untouched(progs: Programs) -> None:
    progs.lb.upsert_service(nodeport(), [LOCAL], rev_nat_index=5)
    for packet in (frame(CLIENT, NODE_IP, 40000, 22), frame(CLIENT, NODE_IP, 40000, NODEPORT, proto=UDP),
                   frame(CLIENT, NODE_IP, 7, 7, proto=ICMP)):
        assert progs.run("from_netdev", packet) == (TC_ACT_OK, packet)


# -- masquerade ----------------------------------------------------------------------------------


@pytest.mark.parametrize("proto", [TCP, UDP, ICMP], ids=["tcp", "udp", "icmp"])
def test_pod_traffic_leaving_the_cluster_is_masqueraded_and_replies_reach_the_pod(progs: Programs,
                                                                                  proto: int) -> None:
    verdict, out = progs.run("to_netdev", frame(POD[0], OUTSIDE, 33000, 443, proto=proto))
    assert verdict == TC_ACT_OK
    src, port, dst, dport = tuple_of(out)
    assert (src, dst) == (NODE_IP, OUTSIDE) and NAT_PORT_MIN <= port <= NAT_PORT_MAX
    assert dport == (port if proto == ICMP else 443)
    assert checksums_ok(out)

    reply = frame(OUTSIDE, NODE_IP, 443 if proto != ICMP else port, port, proto=proto, flags=0x12 if proto == TCP
                  else 0)
    verdict, back = progs.run("from_netdev", reply)
    assert verdict == TC_ACT_REDIRECT  # into the pod's lxc
    assert tuple_of(back)[2:] == (POD[0], 33000)
    assert tuple_of(back)[0] == OUTSIDE
    assert checksums_ok(back)


def test_destinations_that_are_not_masqueraded(progs: Programs) -> None:
    progs.ipcache.update(f"{OTHER_NODE}/32", IpcacheEntry(6))  # remote-node
    for packet in (frame(POD[0], "10.99.0.1", 33000, 80),  # inside ipv4NativeRoutingCIDR
                   frame(POD[0], OTHER_NODE, 33000, 80),  # another node
                   frame("10.250.0.1", OUTSIDE, 33000, 80),  # not a local endpoint
                   frame(NODE_IP, OUTSIDE, 33000, 80)):  # the node itself
        assert progs.run("to_netdev", packet) == (TC_ACT_OK, packet)
    assert list(progs.nat.entries()) == []


def test_masquerade_off_leaves_pod_traffic_alone(progs: Programs, pin_dir: str) -> None:
    with HostConfigMap.open(pin_dir) as config:
        config.write(HostSettings(NODE_IP, "10.0.0.0/8", masquerade=False))
    packet = frame(POD[0], OUTSIDE, 33000, 443)
    assert progs.run("to_netdev", packet) == (TC_ACT_OK, packet)


MARK_MAGIC_NETDEV_PASS = 0x0300  # bpf/lib/proxy.h


def test_a_packet_host_routing_marked_skips_to_netdev_and_loses_the_mark(progs: Programs) -> None:
    """from_container marks a pod's packet to_netdev has nothing to do for (bpf/lib/netdev_pass.h):
    to_netdev returns at once (a packet it would masquerade leaves untouched) and clears the mark.
    Unmarked, another magic, or the node's own address as source: the full path."""
    fd = progs.obj.program_fd("to_netdev")
    packet = frame(POD[0], OUTSIDE, 33000, 443)
    assert prog_test_run_marked(fd, packet, MARK_MAGIC_NETDEV_PASS) == (TC_ACT_OK, packet, 0)
    assert list(progs.nat.entries()) == []
    for mark in (0, MARK_MAGIC_NETDEV_PASS | 1 << 16):
        verdict, out, _ = prog_test_run_marked(fd, packet, mark)
        assert verdict == TC_ACT_OK and tuple_of(out)[0] == NODE_IP  # masqueraded
    # (A node's own packet with the mark still meets the host firewall: test_host_firewall_programs.)


def test_unconfigured_programs_pass_everything(progs: Programs, pin_dir: str) -> None:
    progs.lb.upsert_service(nodeport(), [LOCAL], rev_nat_index=5)
    with HostConfigMap.open(pin_dir) as config:
        config.write(None)
        assert config.read() is None
    for name, packet in (("from_netdev", frame(CLIENT, NODE_IP, 40000, NODEPORT)),
                         ("to_netdev", frame(POD[0], OUTSIDE, 33000, 443))):
        assert progs.run(name, packet) == (TC_ACT_OK, packet)


@pytest.mark.parametrize("proto", [TCP, UDP, ICMP], ids=["tcp", "udp", "icmp"])
def test_checksums_are_right_for_many_packets(progs: Programs, proto: int) -> None:
    """Incremental updates must get every carry right: compare with a full recompute."""
    name = "UDP" if proto == UDP else "TCP"
    progs.lb.upsert_service(nodeport(name), [Backend(2, REMOTE.address, REMOTE.port, name)], rev_nat_index=6)
    rng = random.Random(4242)
    for i in range(60):
        sport = rng.randint(1024, 60000)
        payload = rng.randbytes(rng.randint(0, 40))
        client = f"198.51.100.{1 + i}"
        if proto != ICMP:
            _, out = progs.run("from_netdev", frame(client, NODE_IP, sport, NODEPORT, proto=proto, payload=payload,
                                                    ident=rng.randint(0, 0xFFFF)))
            assert checksums_ok(out), out.hex()
            port = tuple_of(out)[1]
            _, back = progs.run("from_netdev", frame(REMOTE.address, NODE_IP, REMOTE.port, port, proto=proto,
                                                     payload=payload, flags=0x10))
            assert tuple_of(back) == (NODE_IP, NODEPORT, client, sport)
            assert checksums_ok(back), back.hex()
        _, out = progs.run("to_netdev", frame(POD[0], client, sport, 443, proto=proto, payload=payload))
        assert checksums_ok(out), out.hex()
        src, port, _, _ = tuple_of(out)
        assert src == NODE_IP
        _, back = progs.run("from_netdev", frame(client, NODE_IP, port if proto == ICMP else 443, port, proto=proto,
                                                 payload=payload, flags=0 if proto == ICMP else 0x10))
        assert tuple_of(back)[2:] == (POD[0], sport)
        assert checksums_ok(back), back.hex()

