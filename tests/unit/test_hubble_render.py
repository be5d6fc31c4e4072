"""Compact, json, dict and table rendering of constructed flows."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from membrane.hubble import render
from membrane.hubble.proto.flow import flow_pb2

T = int(datetime(2025, 11, 21, 12, 0, 1, 123456, tzinfo=UTC).timestamp() * 1e9) + 789


def ep(pod: str, identity: int = 54400, ns: str = "default") -> flow_pb2.Endpoint:
    return flow_pb2.Endpoint(namespace=ns, pod_name=pod, identity=identity, labels=["k8s:app=netpod"])


def icmp_flow(reply: bool | None = False) -> flow_pb2.Flow:
    f = flow_pb2.Flow(
        verdict=flow_pb2.FORWARDED,
        IP=flow_pb2.IP(source="10.0.1.10", destination="10.0.1.20", ipVersion=flow_pb2.IPv4),
        l4=flow_pb2.Layer4(ICMPv4=flow_pb2.ICMPv4(type=8)),
        source=ep("netpod1"),
        destination=ep("netpod2"),
        Type=flow_pb2.L3_L4,
        node_name="k8s-w1",
        event_type=flow_pb2.CiliumEventType(type=4, sub_type=0),
        traffic_direction=flow_pb2.INGRESS,
        trace_observation_point=flow_pb2.TO_ENDPOINT,
        Summary="ICMPv4 EchoRequest",
    )
    f.time.FromNanoseconds(T)
    if reply is not None:
        f.is_reply.value = reply
    return f


def tcp_flow(flags: dict[str, bool], **kw: object) -> flow_pb2.Flow:
    f = flow_pb2.Flow(
        IP=flow_pb2.IP(source="10.0.0.12", destination="10.0.1.23", ipVersion=flow_pb2.IPv4),
        l4=flow_pb2.Layer4(
            TCP=flow_pb2.TCP(source_port=41234, destination_port=8080, flags=flow_pb2.TCPFlags(**flags))
        ),
        source=ep("web", 1201),
        destination=ep("api-6d9f", 3312, "shop"),
        **kw,
    )
    f.time.FromNanoseconds(T)
    return f


def test_compact_forwarded_icmp() -> None:
    assert render.compact(icmp_flow()) == (
        "Nov 21 12:00:01.123: default/netpod1 (ID:54400) -> default/netpod2 (ID:54400) "
        "to-endpoint FORWARDED (ICMPv4 EchoRequest)"
    )


def test_compact_reply_swaps_ends() -> None:
    f = icmp_flow(reply=True)
    f.source.pod_name, f.destination.pod_name = "netpod2", "netpod1"
    f.Summary = "ICMPv4 EchoReply"
    line = render.compact(f)
    assert (
        "default/netpod1 (ID:54400) <- default/netpod2 (ID:54400) to-endpoint FORWARDED (ICMPv4 EchoReply)"
        in line
    )


def test_compact_drop_uses_reason_text_and_unknown_arrow() -> None:
    f = tcp_flow(
        {"SYN": True},
        verdict=flow_pb2.DROPPED,
        drop_reason=133,
        drop_reason_desc=flow_pb2.POLICY_DENIED,
        event_type=flow_pb2.CiliumEventType(type=1, sub_type=133),
    )
    assert render.compact(f) == (
        "Nov 21 12:00:01.123: default/web:41234 (ID:1201) <> shop/api-6d9f:8080 (ID:3312) "
        "Policy denied DROPPED (TCP Flags: SYN)"
    )


def test_compact_policy_verdict_and_node_name() -> None:
    f = tcp_flow(
        {"SYN": True},
        verdict=flow_pb2.DROPPED,
        node_name="k8s-w2",
        event_type=flow_pb2.CiliumEventType(type=5),
        traffic_direction=flow_pb2.INGRESS,
    )
    assert render.compact(f, node_name=True) == (
        "Nov 21 12:00:01.123 [k8s-w2]: default/web:41234 (ID:1201) <> shop/api-6d9f:8080 (ID:3312) "
        "policy-verdict:none INGRESS DENIED (TCP Flags: SYN)"
    )


def test_summary_computed_when_absent_and_flag_order() -> None:
    f = tcp_flow({"ACK": True, "SYN": True, "FIN": True}, verdict=flow_pb2.FORWARDED)
    assert render.summary_text(f) == "TCP Flags: SYN, ACK, FIN"


def test_reserved_identities_and_numeric() -> None:
    f = icmp_flow()
    f.source.Clear()
    f.source.identity = 2
    assert render.compact(f).split(": ", 1)[1].startswith("10.0.1.10 (world) -> default/netpod2")
    assert "10.0.1.10 (world) -> 10.0.1.20 (ID:54400)" in render.compact(f, numeric=True)


def test_jsonpb_uses_proto_names() -> None:
    f = icmp_flow()
    f.drop_reason_desc = flow_pb2.DROP_REASON_UNKNOWN
    doc = json.loads(render.jsonpb(f))
    assert set(doc) == {"flow", "node_name", "time"}
    assert doc["node_name"] == "k8s-w1" and doc["time"] == "2025-11-21T12:00:01.123456789Z"
    flow = doc["flow"]
    assert flow["verdict"] == "FORWARDED" and flow["Type"] == "L3_L4"
    assert flow["IP"] == {"source": "10.0.1.10", "destination": "10.0.1.20", "ipVersion": "IPv4"}
    assert flow["l4"] == {"ICMPv4": {"type": 8}}
    assert flow["source"]["pod_name"] == "netpod1" and flow["source"]["identity"] == 54400
    assert flow["event_type"] == {"type": 4}
    assert flow["traffic_direction"] == "INGRESS" and flow["trace_observation_point"] == "TO_ENDPOINT"
    assert flow["is_reply"] is False and flow["Summary"] == "ICMPv4 EchoRequest"
    assert "drop_reason_desc" not in flow


def test_dict_and_table() -> None:
    out = render.dicts([icmp_flow(), icmp_flow()])
    blocks = out.split("\n------------\n")
    assert len(blocks) == 2
    assert blocks[0].splitlines() == [
        "  TIMESTAMP: Nov 21 12:00:01.123",
        "     SOURCE: default/netpod1",
        "DESTINATION: default/netpod2",
        "       TYPE: to-endpoint",
        "    VERDICT: FORWARDED",
        "    SUMMARY: ICMPv4 EchoRequest",
    ]
    table = render.table([icmp_flow()], node_name=True).splitlines()
    assert table[0].split() == ["TIMESTAMP", "NODE", "SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"]
    assert table[1].split()[3:] == [
        "k8s-w1",
        "default/netpod1",
        "default/netpod2",
        "to-endpoint",
        "FORWARDED",
        "ICMPv4",
        "EchoRequest",
    ]
