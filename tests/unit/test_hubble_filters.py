"""FlowFilter semantics: whitelist OR, fields AND, blacklist wins; each supported field."""

from __future__ import annotations

import pytest

from membrane.hubble.filters import compile_filter, compile_filters, event_type_filter, parse_selector
from membrane.hubble.proto.flow import flow_pb2


def flow(
    src: tuple[str, str, int] = ("default", "netpod1", 54400),
    dst: tuple[str, str, int] = ("default", "netpod2", 54401),
    *,
    proto: str = "TCP",
    dport: int = 80,
    verdict: int = flow_pb2.FORWARDED,
    reply: bool | None = False,
    **kw: object,
) -> flow_pb2.Flow:
    f = flow_pb2.Flow(
        source=flow_pb2.Endpoint(
            namespace=src[0], pod_name=src[1], identity=src[2], labels=["k8s:app=client"]
        ),
        destination=flow_pb2.Endpoint(
            namespace=dst[0], pod_name=dst[1], identity=dst[2], labels=["k8s:app=web", "k8s:tier=front"]
        ),
        IP=flow_pb2.IP(source="10.0.1.10", destination="10.0.2.20", ipVersion=flow_pb2.IPv4),
        verdict=verdict,
        node_name="k8s-w1",
        event_type=flow_pb2.CiliumEventType(type=4, sub_type=0),
        traffic_direction=flow_pb2.INGRESS,
        **kw,
    )
    if proto == "TCP":
        f.l4.TCP.source_port, f.l4.TCP.destination_port = 41234, dport
        f.l4.TCP.flags.SYN = True
    elif proto == "UDP":
        f.l4.UDP.source_port, f.l4.UDP.destination_port = 5353, dport
    else:
        f.l4.ICMPv4.type = 8
    if reply is not None:
        f.is_reply.value = reply
    return f


F = flow_pb2.FlowFilter


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (F(source_pod=["default/netpod"]), True),
        (F(source_pod=["netpod1"]), True),
        (F(source_pod=["kube-system/"]), False),
        (F(destination_pod=["default/"]), True),
        (F(destination_pod=["default/netpod1"]), False),
        (F(source_ip=["10.0.1.0/24"]), True),
        (F(destination_ip=["10.0.2.20"]), True),
        (F(destination_ip=["10.0.1.0/24"]), False),
        (F(source_label=["app=client"]), True),
        (F(destination_label=["k8s:app in (web, api),tier"]), True),
        (F(destination_label=["app=web,!tier"]), False),
        (F(destination_label=["app!=web"]), False),
        (F(source_identity=[54400]), True),
        (F(destination_identity=[54400]), False),
        (F(destination_port=["80"]), True),
        (F(source_port=["80"]), False),
        (F(protocol=["tcp"]), True),
        (F(protocol=["udp", "icmp"]), False),
        (F(verdict=[flow_pb2.FORWARDED]), True),
        (F(verdict=[flow_pb2.DROPPED]), False),
        (F(event_type=[event_type_filter("trace:to-endpoint")]), True),
        (F(event_type=[event_type_filter("trace:from-endpoint")]), False),
        (F(event_type=[event_type_filter("drop")]), False),
        (F(traffic_direction=[flow_pb2.EGRESS]), False),
        (F(node_name=["k8s-*"]), True),
        (F(node_name=["k8s-ctr"]), False),
        (F(reply=[False]), True),
        (F(reply=[True]), False),
        (F(tcp_flags=[flow_pb2.TCPFlags(SYN=True)]), True),
        (F(tcp_flags=[flow_pb2.TCPFlags(SYN=True, ACK=True)]), False),
        (F(ip_version=[flow_pb2.IPv4]), True),
        (F(source_pod=["default/"], destination_port=["443"]), False),  # AND inside one filter
    ],
)
def test_single_filter_fields(flt: flow_pb2.FlowFilter, expected: bool) -> None:
    assert compile_filter(flt)(flow()) is expected


def test_whitelist_is_or_and_blacklist_wins() -> None:
    match = compile_filters([F(source_pod=["nope/"]), F(destination_port=["80"])])
    assert match(flow())
    assert not compile_filters([F(source_pod=["nope/"]), F(destination_port=["81"])])(flow())
    assert not compile_filters([F(destination_port=["80"])], [F(protocol=["tcp"])])(flow())
    assert compile_filters([], [F(protocol=["udp"])])(flow())
    assert compile_filters()(flow())


def test_protocol_icmp_aliases_and_unknown_reply() -> None:
    f = flow(proto="ICMP", reply=None)
    assert compile_filter(F(protocol=["icmpv4"]))(f) and compile_filter(F(protocol=["ICMP"]))(f)
    assert not compile_filter(F(reply=[False]))(f)
    assert not compile_filter(F(destination_port=["80"]))(f)


def test_drop_reason_and_uuid() -> None:
    f = flow(verdict=flow_pb2.DROPPED, drop_reason_desc=flow_pb2.POLICY_DENIED, uuid="abc")
    assert compile_filter(F(drop_reason_desc=[flow_pb2.POLICY_DENIED], uuid=["abc"]))(f)
    assert not compile_filter(F(drop_reason_desc=[flow_pb2.POLICY_DENY]))(f)


def test_selector_errors() -> None:
    with pytest.raises(ValueError):
        parse_selector("a=(b")
    with pytest.raises(ValueError):
        event_type_filter("bogus")
