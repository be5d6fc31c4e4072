"""Hubble flow metrics: counting rules, labelsContext, and the Prometheus text exposition."""

from __future__ import annotations

import pytest
from google.protobuf import json_format

from membrane.hubble.exposition import parse
from membrane.hubble.metrics import HubbleMetrics, Registry, parse_metric_options
from membrane.hubble.proto.flow import flow_pb2

ALL = ["flow", "drop", "tcp", "port-distribution", "icmp"]


def flow(**fields: object) -> flow_pb2.Flow:
    base: dict[str, object] = {
        "verdict": "FORWARDED", "event_type": {"type": 4, "sub_type": 0}, "Type": "L3_L4",
        "IP": {"source": "10.0.0.12", "destination": "10.0.1.23", "ipVersion": "IPv4"},
        "source": {"namespace": "default", "pod_name": "client", "labels": ["k8s:app=curl"],
                   "workloads": [{"name": "client", "kind": "Deployment"}]},
        "destination": {"namespace": "shop", "pod_name": "web-1", "labels": ["k8s:app=web"]},
        "traffic_direction": "INGRESS",
    }
    base.update(fields)
    return json_format.ParseDict(base, flow_pb2.Flow())


def tcp(syn: bool = False, ack: bool = False, fin: bool = False, rst: bool = False, dport: int = 80) -> dict:
    flags = {k: True for k, v in (("SYN", syn), ("ACK", ack), ("FIN", fin), ("RST", rst)) if v}
    return {"TCP": {"source_port": 41234, "destination_port": dport, "flags": flags}}


def value(reg: Registry, name: str, **labels: str) -> float:
    return reg.families[name].get(labels)


def test_flows_processed_by_type_subtype_verdict_protocol() -> None:
    reg = Registry()
    hm = HubbleMetrics(reg, ALL)
    hm.process(flow(l4=tcp(syn=True)))
    hm.process(flow(l4=tcp(syn=True)))
    hm.process(flow(l4={"ICMPv4": {"type": 8}}, event_type={"type": 4, "sub_type": 5}))
    hm.process(flow(l4=tcp(syn=True), verdict="DROPPED", drop_reason_desc="POLICY_DENIED", event_type={"type": 1,
                                                                                                       "sub_type": 133}))
    hm.process(flow(l4={"UDP": {"destination_port": 53}}, event_type={"type": 5}))
    name = "hubble_flows_processed_total"
    assert value(reg, name, protocol="TCP", type="Trace", subtype="to-endpoint", verdict="FORWARDED") == 2
    assert value(reg, name, protocol="ICMPv4", type="Trace", subtype="from-endpoint", verdict="FORWARDED") == 1
    assert value(reg, name, protocol="TCP", type="Drop", subtype="", verdict="DROPPED") == 1
    assert value(reg, name, protocol="UDP", type="PolicyVerdict", subtype="", verdict="FORWARDED") == 1


def test_drops_only_dropped_by_reason_enum_name() -> None:
    reg = Registry()
    hm = HubbleMetrics(reg, ["drop"])
    hm.process(flow(l4=tcp(syn=True)))
    hm.process(flow(l4=tcp(syn=True), verdict="DROPPED", drop_reason_desc="POLICY_DENIED", event_type={"type": 1}))
    hm.process(flow(l4={"ICMPv4": {"type": 8}}, verdict="DROPPED", drop_reason_desc="POLICY_DENY",
                    event_type={"type": 1}))
    assert value(reg, "hubble_drop_total", reason="POLICY_DENIED", protocol="TCP") == 1
    assert value(reg, "hubble_drop_total", reason="POLICY_DENY", protocol="ICMPv4") == 1
    assert len(reg.families["hubble_drop_total"].values) == 2


def test_tcp_flags_forwarded_only() -> None:
    reg = Registry()
    hm = HubbleMetrics(reg, ["tcp"])
    for f in (tcp(syn=True), tcp(syn=True, ack=True), tcp(fin=True, ack=True), tcp(rst=True), tcp(ack=True)):
        hm.process(flow(l4=f))
    hm.process(flow(l4=tcp(syn=True), verdict="DROPPED"))
    hm.process(flow(l4=tcp(syn=True), IP={"ipVersion": "IPv6"}))
    fam = "hubble_tcp_flags_total"
    assert value(reg, fam, flag="SYN", family="IPv4") == 1
    assert value(reg, fam, flag="SYN-ACK", family="IPv4") == 1
    assert value(reg, fam, flag="FIN", family="IPv4") == 1
    assert value(reg, fam, flag="RST", family="IPv4") == 1
    assert value(reg, fam, flag="SYN", family="IPv6") == 1


def test_port_distribution_needs_known_non_reply() -> None:
    reg = Registry()
    hm = HubbleMetrics(reg, ["port-distribution"])
    hm.process(flow(l4=tcp(syn=True), is_reply=False))
    hm.process(flow(l4=tcp(syn=True, ack=True), is_reply=True))
    hm.process(flow(l4=tcp(syn=True)))  # unknown direction
    hm.process(flow(l4={"UDP": {"destination_port": 53}}, is_reply=False))
    hm.process(flow(l4=tcp(syn=True), is_reply=False, verdict="DROPPED"))
    fam = reg.families["hubble_port_distribution_total"]
    assert fam.values == {("TCP", "80"): 1.0, ("UDP", "53"): 1.0}


def test_icmp_types() -> None:
    reg = Registry()
    hm = HubbleMetrics(reg, ["icmp"])
    hm.process(flow(l4={"ICMPv4": {"type": 8}}))
    hm.process(flow(l4={"ICMPv4": {"type": 3, "code": 3}}))
    hm.process(flow(l4={"ICMPv6": {"type": 129}}, IP={"ipVersion": "IPv6"}))
    assert value(reg, "hubble_icmp_total", family="IPv4", type="EchoRequest") == 1
    assert value(reg, "hubble_icmp_total", family="IPv4", type="DestinationUnreachable(Port)") == 1
    assert value(reg, "hubble_icmp_total", family="IPv6", type="EchoReply") == 1


def test_labels_context() -> None:
    reg = Registry()
    hm = HubbleMetrics(reg, ["flow:labelsContext=source_namespace,destination_namespace,traffic_direction",
                             "drop:labelsContext=source_ip,source_workload,destination_app"])
    fam = reg.families["hubble_flows_processed_total"]
    assert fam.label_names == ("protocol", "type", "subtype", "verdict", "source_namespace",
                               "destination_namespace", "traffic_direction")
    assert reg.families["hubble_drop_total"].label_names == ("source_ip", "source_workload", "destination_app",
                                                             "reason", "protocol")
    hm.process(flow(l4=tcp(syn=True), verdict="DROPPED", drop_reason_desc="POLICY_DENIED", event_type={"type": 1},
                    traffic_direction="TRAFFIC_DIRECTION_UNKNOWN"))
    assert fam.get({"protocol": "TCP", "type": "Drop", "subtype": "", "verdict": "DROPPED",
                    "source_namespace": "default", "destination_namespace": "shop",
                    "traffic_direction": "unknown"}) == 1
    assert value(reg, "hubble_drop_total", source_ip="10.0.0.12", source_workload="client", destination_app="web",
                 reason="POLICY_DENIED", protocol="TCP") == 1


def test_metric_options_parsing() -> None:
    opts = parse_metric_options("dns:query;ignoreAAAA drop tcp flow:labelsContext=source_ip")
    assert [o.name for o in opts] == ["dns", "drop", "tcp", "flow"]
    assert opts[0].options == (("query", ""), ("ignoreAAAA", ""))
    assert opts[3].labels_context == ("source_ip",)
    assert HubbleMetrics(Registry(), opts_text := "flows-to-world drop").unsupported == ["flows-to-world"] and opts_text
    with pytest.raises(ValueError, match="unknown Hubble metric"):
        parse_metric_options(["bogus"])
    with pytest.raises(ValueError, match="labelsContext"):
        parse_metric_options(["flow:labelsContext=source_color"])


def test_exposition_text() -> None:
    reg = Registry()
    hm = HubbleMetrics(reg, ["drop", "flow"])
    hm.process(flow(l4=tcp(syn=True), verdict="DROPPED", drop_reason_desc="POLICY_DENIED", event_type={"type": 1}))
    hm.lost("hubble_ring_buffer", 3)
    text = reg.exposition()
    assert text == (
        "# HELP hubble_lost_events_total Number of lost events\n"
        "# TYPE hubble_lost_events_total counter\n"
        'hubble_lost_events_total{source="hubble_ring_buffer"} 3.0\n'
        "# HELP hubble_drop_total Number of drops\n"
        "# TYPE hubble_drop_total counter\n"
        'hubble_drop_total{protocol="TCP",reason="POLICY_DENIED"} 1.0\n'
        "# HELP hubble_flows_processed_total Total number of flows processed\n"
        "# TYPE hubble_flows_processed_total counter\n"
        'hubble_flows_processed_total{protocol="TCP",subtype="",type="Drop",verdict="DROPPED"} 1.0\n'
    )


def _http(kind: str, code: int = 0, direction: str = "INGRESS", latency: int = 0) -> flow_pb2.Flow:
    return flow(event_type={"type": 129}, Type="L7", traffic_direction=direction,
                l7={"type": kind, "latency_ns": str(latency),
                    "http": {"method": "POST", "protocol": "HTTP/1.1", "code": code, "url": "http://d/v1"}})


def test_http_v2_counts_responses_by_status_and_reporter_with_a_duration_histogram() -> None:
    reg = Registry()
    hm = HubbleMetrics(reg, ["httpV2:labelsContext=source_namespace"])
    hm.process(_http("REQUEST"))
    hm.process(_http("RESPONSE", 200, latency=3_000_000))
    hm.process(_http("RESPONSE", 403, direction="EGRESS", latency=1_000_000))
    assert value(reg, "hubble_http_requests_total", method="POST", protocol="HTTP/1.1", status="200",
                 reporter="server", source_namespace="default") == 1
    assert value(reg, "hubble_http_requests_total", method="POST", protocol="HTTP/1.1", status="403",
                 reporter="client", source_namespace="default") == 1
    text = reg.exposition("hubble_http_request_duration_seconds")
    assert ("hubble_http_request_duration_seconds_bucket", {"method": "POST", "reporter": "server",
            "source_namespace": "default", "le": "0.005"}, 1.0) in parse(text)


def test_http_v1_counts_requests_and_responses_apart() -> None:
    reg = Registry()
    hm = HubbleMetrics(reg, ["http"])
    hm.process(_http("REQUEST"))
    hm.process(_http("RESPONSE", 200))
    assert value(reg, "hubble_http_requests_total", method="POST", protocol="HTTP/1.1", reporter="server") == 1
    assert value(reg, "hubble_http_responses_total", method="POST", status="200", reporter="server") == 1


def _dns(kind: str, verdict: str = "FORWARDED", **dns: object) -> flow_pb2.Flow:
    return flow(event_type={"type": 129}, Type="L7", verdict=verdict, traffic_direction="EGRESS",
                l7={"type": kind, "dns": {"query": "one.one.one.one.", "qtypes": ["A"], **dns}})


def test_dns_counts_queries_denials_responses_and_record_types() -> None:
    reg = Registry()
    hm = HubbleMetrics(reg, ["dns:query;labelsContext=source_namespace"])
    hm.process(_dns("REQUEST"))
    hm.process(_dns("REQUEST", "DROPPED", query="ipinfo.io."))
    hm.process(_dns("RESPONSE", ips=["1.1.1.1", "1.0.0.1"], rrtypes=["A"], ttl=300))
    assert value(reg, "hubble_dns_queries_total", rcode="", qtypes="A", ips_returned="0", query="one.one.one.one.",
                 source_namespace="default") == 1
    assert value(reg, "hubble_dns_queries_total", rcode="Policy denied", qtypes="A", ips_returned="0",
                 query="ipinfo.io.", source_namespace="default") == 1
    assert value(reg, "hubble_dns_responses_total", rcode="No Error", qtypes="A", ips_returned="2",
                 query="one.one.one.one.", source_namespace="default") == 1
    assert value(reg, "hubble_dns_response_types_total", type="A", qtypes="A", query="one.one.one.one.",
                 source_namespace="default") == 1
    ignoring = HubbleMetrics(reg2 := Registry(), ["dns:ignoreAAAA"])
    ignoring.process(_dns("REQUEST", qtypes=["AAAA"]))
    assert "hubble_dns_queries_total{" not in reg2.exposition()


def test_kafka_counts_requests_by_topic_key_and_error() -> None:
    reg = Registry()
    hm = HubbleMetrics(reg, ["kafka"])
    hm.process(flow(event_type={"type": 129}, Type="L7", verdict="DROPPED", traffic_direction="INGRESS",
                    l7={"type": "REQUEST", "kafka": {"topic": "rebel-plans", "api_key": "produce", "error_code": 29}}))
    assert value(reg, "hubble_kafka_requests_total", topic="rebel-plans", api_key="produce", error_code="29",
                 reporter="server") == 1
    assert "hubble_kafka_request_duration_seconds_bucket" in reg.exposition("hubble_kafka_request_duration_seconds")
