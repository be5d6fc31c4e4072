"""flow_from_event on packet bytes built here: ICMP echo, TCP SYN, UDP, a policy drop."""

from __future__ import annotations

import ipaddress
import struct

from membrane.hubble.events import DatapathEvent, EndpointInfo, flow_from_event
from membrane.hubble.packet import decode_frame
from membrane.hubble.proto.flow import flow_pb2

SRC_MAC, DST_MAC = bytes.fromhex("aabbcc000001"), bytes.fromhex("aabbcc000002")
T0 = 1_700_000_000_123_456_789


def frame(proto: int, payload: bytes, src: str = "10.0.1.10", dst: str = "10.0.1.20") -> bytes:
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    )  # fmt: skip
    return DST_MAC + SRC_MAC + b"\x08\x00" + ip + payload


def tcp(sport: int, dport: int, flags: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)


def udp(sport: int, dport: int) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8, 0)


ICMP_ECHO = bytes([8, 0, 0, 0, 0, 1, 0, 1])
PODS = {
    "10.0.1.10": EndpointInfo(
        identity=54400, namespace="default", pod_name="netpod1", endpoint_id=1234,
        labels=("k8s:io.kubernetes.pod.namespace=default", "k8s:app=netpod"),
        workloads=(("netpod", "Deployment"),),
    ),
    "10.0.1.20": EndpointInfo(
        identity=54400, namespace="default", pod_name="netpod2", endpoint_id=2345,
        labels=("k8s:app=netpod",),
    ),
}  # fmt: skip


def lookup(ip: str) -> EndpointInfo | None:
    return PODS.get(ip)


def make(**kw: object) -> flow_pb2.Flow:
    base: dict[str, object] = {"node_name": "k8s-w1", "timestamp_ns": T0}
    base.update(kw)
    return flow_from_event(base, lookup, uuid_factory=lambda: "u-1")


def test_icmp_echo_to_endpoint() -> None:
    f = make(kind="trace", packet=frame(1, ICMP_ECHO), observation_point=0, trace_reason=0, endpoint_id=2345)
    assert f.verdict == flow_pb2.FORWARDED
    assert f.ethernet.source == "aa:bb:cc:00:00:01" and f.ethernet.destination == "aa:bb:cc:00:00:02"
    assert (f.IP.source, f.IP.destination, f.IP.ipVersion) == ("10.0.1.10", "10.0.1.20", flow_pb2.IPv4)
    assert f.l4.ICMPv4.type == 8
    assert f.source.pod_name == "netpod1" and f.source.ID == 1234 and f.source.identity == 54400
    assert list(f.source.labels) == sorted(PODS["10.0.1.10"].labels)
    assert f.source.workloads[0].kind == "Deployment"
    assert f.destination.pod_name == "netpod2"
    assert f.Type == flow_pb2.L3_L4 and f.node_name == "k8s-w1" and f.uuid == "u-1"
    assert (f.event_type.type, f.event_type.sub_type) == (4, 0)
    assert f.trace_observation_point == flow_pb2.TO_ENDPOINT
    assert f.trace_reason == flow_pb2.NEW
    assert f.HasField("is_reply") and f.is_reply.value is False
    assert f.traffic_direction == flow_pb2.INGRESS
    assert f.Summary == "ICMPv4 EchoRequest"
    assert f.time.ToNanoseconds() == T0


def test_tcp_syn_from_endpoint_is_egress() -> None:
    f = make(kind="trace", packet=frame(6, tcp(41234, 80, 0x02)), observation_point=5, trace_reason=0)
    assert f.l4.TCP.source_port == 41234 and f.l4.TCP.destination_port == 80
    assert f.l4.TCP.flags.SYN and not f.l4.TCP.flags.ACK
    assert f.trace_observation_point == flow_pb2.FROM_ENDPOINT
    assert f.traffic_direction == flow_pb2.EGRESS
    assert f.Summary == "TCP Flags: SYN"


def test_reply_flips_direction_and_sets_is_reply() -> None:
    pkt = frame(6, tcp(80, 41234, 0x12), src="10.0.1.20", dst="10.0.1.10")
    f = make(kind="trace", packet=pkt, observation_point=0, trace_reason=2)
    assert f.is_reply.value is True and f.trace_reason == flow_pb2.REPLY
    assert f.traffic_direction == flow_pb2.EGRESS
    assert f.Summary == "TCP Flags: SYN, ACK"


def test_udp() -> None:
    f = make(kind="trace", packet=frame(17, udp(5353, 53)), observation_point=3, trace_reason=1)
    assert f.l4.UDP.destination_port == 53 and f.Summary == "UDP"
    assert f.trace_observation_point == flow_pb2.TO_STACK
    assert f.trace_reason == flow_pb2.ESTABLISHED


def test_policy_drop_133() -> None:
    f = make(kind="drop", packet=frame(6, tcp(41234, 80, 0x02)), drop_reason=133, endpoint_id=2345)
    assert f.verdict == flow_pb2.DROPPED
    assert f.drop_reason == 133 and f.drop_reason_desc == flow_pb2.POLICY_DENIED
    assert (f.event_type.type, f.event_type.sub_type) == (1, 133)
    assert not f.HasField("is_reply")
    assert f.traffic_direction == flow_pb2.INGRESS  # dropped at the destination endpoint


def test_drop_at_source_is_egress() -> None:
    f = make(kind="drop", packet=frame(6, tcp(41234, 80, 0x02)), drop_reason=181, endpoint_id=1234)
    assert f.drop_reason_desc == flow_pb2.POLICY_DENY and f.traffic_direction == flow_pb2.EGRESS


def test_policy_verdict_event() -> None:
    f = make(
        kind="policy-verdict", packet=frame(6, tcp(41234, 80, 0x02)), ingress=True, action="allow",
        policy_match_type=2,
    )  # fmt: skip
    assert f.verdict == flow_pb2.FORWARDED and f.policy_match_type == 2
    assert f.event_type.type == 5 and f.traffic_direction == flow_pb2.INGRESS
    assert f.is_reply.value is False


def test_unknown_peer_keeps_identity_from_event() -> None:
    f = make(kind="trace", packet=frame(1, ICMP_ECHO, src="1.1.1.1"), observation_point=10, src_identity=2)
    assert f.source.identity == 2 and not f.source.pod_name
    assert f.trace_observation_point == flow_pb2.FROM_NETWORK


def test_truncated_frames_do_not_raise() -> None:
    assert decode_frame(b"\x00" * 5).ip is None
    d = decode_frame(frame(6, b"\x00\x50"))
    assert d.ip is not None and d.l4 is None


def test_dataclass_event_and_encrypted_reason() -> None:
    ev = DatapathEvent(
        kind="trace", packet=frame(1, ICMP_ECHO), timestamp_ns=T0, node_name="n", observation_point=11,
        trace_reason=0x80 | 1,
    )  # fmt: skip
    f = flow_from_event(ev, lookup)
    assert f.IP.encrypted and f.trace_reason == flow_pb2.ESTABLISHED
    assert f.trace_observation_point == flow_pb2.TO_NETWORK and f.uuid


ATTACKER = EndpointInfo(identity=54500, namespace="default", pod_name="attacker", endpoint_id=77,
                        labels=("k8s:app=attacker",))


def by_endpoint(ep_id: int) -> EndpointInfo | None:
    return ATTACKER if ep_id == 77 else None


def test_spoofed_source_drop_names_the_sender_not_the_claimed_address() -> None:
    """10.0.1.10 is netpod1's address; the attacker's veth sent it, so the flow names the attacker."""
    base = {"node_name": "k8s-w1", "timestamp_ns": T0, "kind": "drop", "drop_reason": 132, "endpoint_id": 77,
            "src_identity": 54500, "dst_identity": 54400, "ingress": False,
            "packet": frame(17, udp(50242, 7777), src="10.0.1.10")}
    f = flow_from_event(base, lookup, uuid_factory=lambda: "u-1", lookup_endpoint=by_endpoint)
    assert f.verdict == flow_pb2.DROPPED and f.drop_reason_desc == flow_pb2.INVALID_SOURCE_IP
    assert (f.source.pod_name, f.source.identity) == ("attacker", 54500)
    assert f.IP.source == "10.0.1.10" and f.destination.pod_name == "netpod2"
    # Other drops keep naming the packet's source.
    policy = flow_from_event({**base, "drop_reason": 133}, lookup, uuid_factory=lambda: "u-1",
                             lookup_endpoint=by_endpoint)
    assert policy.source.pod_name == "netpod1"


def test_spoofed_arp_drop_names_the_sender() -> None:
    arp_frame = b"\xff" * 6 + SRC_MAC + b"\x08\x06" + bytes(28)
    f = flow_from_event({"node_name": "k8s-w1", "timestamp_ns": T0, "kind": "drop", "drop_reason": 130,
                         "endpoint_id": 77, "src_identity": 54500, "packet": arp_frame},
                        lookup, uuid_factory=lambda: "u-1", lookup_endpoint=by_endpoint)
    assert f.source.pod_name == "attacker" and f.drop_reason_desc == flow_pb2.INVALID_SOURCE_MAC


def test_policy_verdicts_name_their_policies() -> None:
    from membrane.hubble.events import PolicyName, PolicyQuestion
    from membrane.hubble.render import compact

    asked: list[PolicyQuestion] = []

    def attribute(q: PolicyQuestion) -> tuple[list[PolicyName], list[str]]:
        asked.append(q)
        if q.denied:
            return [PolicyName("deny-all", "", "CiliumClusterwideNetworkPolicy")], ["denied!"]
        return [PolicyName("a", "default", "CiliumNetworkPolicy"), PolicyName("b", "default", "NetworkPolicy")], []

    base = {"node_name": "k8s-w1", "timestamp_ns": T0, "kind": "policy-verdict", "endpoint_id": 2345,
            "src_identity": 7, "dst_identity": 9}
    allowed = flow_from_event({**base, "packet": frame(6, tcp(41234, 80, 0x02)), "ingress": True, "action": "allow"},
                              lookup, attribute_policy=attribute)
    assert asked[-1] == PolicyQuestion(2345, True, 7, 6, 80, False)  # ingress: the peer is the source
    assert [p.name for p in allowed.ingress_allowed_by] == ["a", "b"] and not allowed.egress_allowed_by
    assert "ALLOWED BY a (CiliumNetworkPolicy), b (NetworkPolicy)" in compact(allowed, policy_names=True)
    assert "ALLOWED (" in compact(allowed)  # names only when asked for
    denied = flow_from_event({**base, "packet": frame(17, udp(5353, 53)), "ingress": False, "action": "deny"},
                             lookup, attribute_policy=attribute)
    assert asked[-1] == PolicyQuestion(2345, False, 9, 17, 53, True)  # egress: the peer is the destination
    assert [p.kind for p in denied.egress_denied_by] == ["CiliumClusterwideNetworkPolicy"]
    assert list(denied.policy_log) == ["denied!"]
    assert "DENIED BY deny-all (CiliumClusterwideNetworkPolicy)" in compact(denied, policy_names=True)
    trace = flow_from_event({**base, "kind": "trace", "packet": frame(6, tcp(1, 2, 0x10))}, lookup,
                            attribute_policy=attribute)
    assert len(asked) == 2 and not trace.ingress_allowed_by  # traces are not verdicts
