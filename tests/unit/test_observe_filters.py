"""`membrane observe` filter flags → Hubble FlowFilters (allowlist/denylist, left OR right, --not)."""

from __future__ import annotations

import argparse

import pytest
from google.protobuf import json_format

from membrane.cli import observe, target
from membrane.cli.arguments import CLIError
from membrane.cli.observe_filters import FilterError, build_filters, event_type_filter
from membrane.hubble.proto.flow import flow_pb2
from membrane.hubble.proto.observer import observer_pb2


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    observe.add_parser(sub)
    args = parser.parse_args(["observe", *argv])
    args.lab = "membrane"
    return args


def filters(*argv: str) -> tuple[list[dict], list[dict]]:
    return build_filters(parse(*argv).filters)


@pytest.mark.parametrize(("flag", "src", "dst"), [
    ("--pod", "source_pod", "destination_pod"),
    ("--ip", "source_ip", "destination_ip"),
    ("--label", "source_label", "destination_label"),
    ("-l", "source_label", "destination_label"),
    ("--port", "source_port", "destination_port"),
])
def test_either_end_flags_make_two_filters(flag: str, src: str, dst: str) -> None:
    assert filters(flag, "x") == ([{src: ["x"]}, {dst: ["x"]}], [])


@pytest.mark.parametrize(("flag", "key", "value", "expected"), [
    ("--from-pod", "source_pod", "default/netpod1", "default/netpod1"),
    ("--to-pod", "destination_pod", "default/netpod2", "default/netpod2"),
    ("--from-ip", "source_ip", "10.0.0.0/8", "10.0.0.0/8"),
    ("--to-ip", "destination_ip", "10.0.1.5", "10.0.1.5"),
    ("--from-label", "source_label", "app=web", "app=web"),
    ("--to-label", "destination_label", "app=db", "app=db"),
    ("--from-port", "source_port", "41234", "41234"),
    ("--to-port", "destination_port", "80", "80"),
    ("--from-identity", "source_identity", "54400", 54400),
    ("--to-identity", "destination_identity", "world", 2),
    ("--protocol", "protocol", "tcp", "tcp"),
    ("--node-name", "node_name", "k8s-w1", "k8s-w1"),
    ("--verdict", "verdict", "DROPPED", "DROPPED"),
    ("--verdict", "verdict", "forwarded", "FORWARDED"),
    ("--traffic-direction", "traffic_direction", "ingress", "INGRESS"),
])
def test_one_sided_flags_make_one_filter(flag: str, key: str, value: str, expected: object) -> None:
    assert filters(flag, value) == ([{key: [expected]}], [])


def test_identity_either_end_and_reserved_names() -> None:
    assert filters("--identity", "host") == ([{"source_identity": [1]}, {"destination_identity": [1]}], [])
    with pytest.raises(FilterError):
        filters("--identity", "nobody")


@pytest.mark.parametrize(("value", "expected"), [
    ("trace", {"type": 4}),
    ("drop", {"type": 1}),
    ("policy-verdict", {"type": 5}),
    ("trace:to-endpoint", {"type": 4, "match_sub_type": True, "sub_type": 0}),
    ("trace:from-network", {"type": 4, "match_sub_type": True, "sub_type": 10}),
    ("drop:133", {"type": 1, "match_sub_type": True, "sub_type": 133}),
    ("4", {"type": 4}),
])
def test_type_flag(value: str, expected: dict) -> None:
    assert event_type_filter(value) == expected
    assert filters("-t", value) == ([{"event_type": [expected]}], [])


def test_bad_values_are_refused() -> None:
    for argv in (("--type", "bogus"), ("--type", "trace:nowhere"), ("--verdict", "MAYBE"),
                 ("--traffic-direction", "sideways")):
        with pytest.raises(FilterError):
            filters(*argv)


def test_repeated_values_or_and_different_flags_and() -> None:
    allow, deny = filters("--pod", "default/a", "--pod", "default/b", "--verdict", "DROPPED")
    assert allow == [
        {"source_pod": ["default/a", "default/b"], "verdict": ["DROPPED"]},
        {"destination_pod": ["default/a", "default/b"], "verdict": ["DROPPED"]},
    ]
    assert deny == []


def test_not_sends_only_the_next_filter_to_the_blacklist() -> None:
    allow, deny = filters("--pod", "default/a", "--not", "--verdict", "FORWARDED", "--protocol", "tcp")
    assert allow == [{"source_pod": ["default/a"], "protocol": ["tcp"]},
                     {"destination_pod": ["default/a"], "protocol": ["tcp"]}]
    assert deny == [{"verdict": ["FORWARDED"]}]
    assert filters("--not", "--ip", "1.2.3.4") == ([], [{"source_ip": ["1.2.3.4"]}, {"destination_ip": ["1.2.3.4"]}])


def test_not_misuse() -> None:
    with pytest.raises(FilterError, match="consecutive"):
        filters("--not", "--not", "--pod", "x")
    with pytest.raises(FilterError, match="followed"):
        filters("--pod", "x", "--not")


def test_namespace_applies_to_pods_on_either_end() -> None:
    assert filters("-n", "shop") == ([{"source_pod": ["shop/"]}, {"destination_pod": ["shop/"]}], [])
    assert filters("--namespace", "shop", "--pod", "api") == (
        [{"source_pod": ["shop/api"]}, {"destination_pod": ["shop/api"]}], [])


def test_from_and_to_namespace() -> None:
    assert filters("--from-namespace", "a") == ([{"source_pod": ["a/"]}], [])
    assert filters("--to-namespace", "b", "--to-pod", "web") == ([{"destination_pod": ["b/web"]}], [])
    assert filters("--from-namespace", "a", "--pod", "x") == (
        [{"source_pod": ["a/x"]}, {"source_pod": ["a/"], "destination_pod": ["x"]}], [])


@pytest.mark.parametrize("argv", [
    ("--port", "80", "--to-port", "81"), ("--label", "a=b", "--from-label", "c=d"),
    ("--identity", "1", "--to-identity", "2"), ("--ip", "1.1.1.1", "--from-pod", "x"),
    ("--namespace", "a", "--to-pod", "x"),
])
def test_conflicting_flags(argv: tuple[str, ...]) -> None:
    with pytest.raises(FilterError, match="cannot be combined"):
        filters(*argv)


def test_no_filters() -> None:
    assert filters() == ([], [])


def test_filters_are_valid_flowfilters() -> None:
    allow, deny = filters("--pod", "default/a", "-t", "trace:to-endpoint", "--verdict", "DROPPED",
                          "--identity", "54400", "--traffic-direction", "egress", "--not", "--protocol", "udp")
    for item in allow + deny:
        msg = json_format.ParseDict(item, flow_pb2.FlowFilter())
        assert json_format.MessageToDict(msg, preserving_proto_field_name=True)
    left = json_format.ParseDict(allow[0], flow_pb2.FlowFilter())
    assert left.verdict == [flow_pb2.Verdict.Value("DROPPED")]
    assert left.event_type[0].match_sub_type and left.event_type[0].sub_type == 0
    assert left.traffic_direction == [flow_pb2.TrafficDirection.Value("EGRESS")]


def test_request_number_first_last_follow() -> None:
    assert observe.build_request(parse()) == {"number": 20}
    assert observe.build_request(parse("--last", "5")) == {"number": 5}
    assert observe.build_request(parse("--first", "3")) == {"number": 3, "first": True}
    assert observe.build_request(parse("-f")) == {"follow": True}
    assert observe.build_request(parse("-f", "--last", "2")) == {"number": 2, "follow": True}
    for argv in (("--first", "1", "--last", "1"), ("--first", "1", "-f"), ("-f", "-o", "table")):
        with pytest.raises(FilterError):
            observe.build_request(parse(*argv))


def test_request_is_a_valid_getflowsrequest() -> None:
    req = observe.build_request(parse("--since", "2025-01-10T09:15:02Z", "--until", "2025-01-10T10:00:00Z",
                                      "--to-pod", "default/netpod2", "--not", "--type", "trace"))
    assert req["since"] == "2025-01-10T09:15:02.000000Z"
    assert "number" not in req
    msg = json_format.ParseDict(req, observer_pb2.GetFlowsRequest())
    assert msg.since.seconds == 1736500502 and msg.until.seconds == 1736503200
    assert list(msg.whitelist[0].destination_pod) == ["default/netpod2"]
    assert msg.blacklist[0].event_type[0].type == 4


def test_server_target(monkeypatch: pytest.MonkeyPatch) -> None:
    lab = target.Target("unix:///nowhere", run_dir="/run/membrane/membrane")
    monkeypatch.setattr(target, "target", lambda _lab: lab)
    monkeypatch.setattr(target, "node_entries", lambda _lab: {})
    assert observe.server_target(parse()) == "unix:///run/membrane/membrane/relay.sock"
    assert observe.server_target(parse("--node", "k8s-w1")) == "unix:///run/membrane/membrane/hubble-k8s-w1.sock"
    assert observe.server_target(parse("--server", "localhost:4245")) == "localhost:4245"
    # another cluster: the node's socket as its agent published it; no relay without --server
    monkeypatch.setattr(target, "target", lambda _lab: target.Target("http://etcd:2379", where="etcd http://etcd:2379"))
    monkeypatch.setattr(target, "node_entries", lambda _lab: {"n1": {"hubbleSocket": "/var/run/membrane/hubble-n1.sock"}})
    assert observe.server_target(parse("--node", "n1")) == "unix:///var/run/membrane/hubble-n1.sock"
    with pytest.raises(CLIError, match="relay's address is not in the store: give --server"):
        observe.server_target(parse())


def test_service_flags() -> None:
    assert filters("--service", "default/webpod") == (
        [{"source_service": ["default/webpod"]}, {"destination_service": ["default/webpod"]}], [])
    assert filters("--to-service", "default/webpod") == ([{"destination_service": ["default/webpod"]}], [])
    assert filters("--from-service", "kube-system/kube-dns", "--not", "--to-service", "default/x") == (
        [{"source_service": ["kube-system/kube-dns"]}], [{"destination_service": ["default/x"]}])
    with pytest.raises(FilterError, match="--to-service and --service cannot be combined"):
        filters("--service", "a/b", "--to-service", "a/c")


def test_drop_reason_tcp_flags_and_uuid_flags() -> None:
    assert filters("--drop-reason-desc", "policy_denied") == ([{"drop_reason_desc": ["POLICY_DENIED"]}], [])
    assert filters("--tcp-flags", "SYN,ack", "--tcp-flags", "FIN") == (
        [{"tcp_flags": [{"SYN": True, "ACK": True}, {"FIN": True}]}], [])
    assert filters("--uuid", "u-1") == ([{"uuid": ["u-1"]}], [])
    allow, _ = filters("--drop-reason-desc", "POLICY_DENY", "--tcp-flags", "SYN", "--to-service", "a/b")
    flt = json_format.ParseDict(allow[0], flow_pb2.FlowFilter())
    assert flt.drop_reason_desc == [flow_pb2.POLICY_DENY] and flt.tcp_flags[0].SYN
    with pytest.raises(FilterError, match="invalid --drop-reason-desc value: NOPE"):
        filters("--drop-reason-desc", "NOPE")
    with pytest.raises(FilterError, match="invalid --tcp-flags value: SYN,XYZ"):
        filters("--tcp-flags", "SYN,XYZ")


def test_workload_reply_ip_family_and_all_namespaces_flags() -> None:
    assert filters("--workload", "Deployment/web") == (
        [{"source_workload": [{"kind": "Deployment", "name": "web"}]},
         {"destination_workload": [{"kind": "Deployment", "name": "web"}]}], [])
    assert filters("--to-workload", "web") == ([{"destination_workload": [{"name": "web"}]}], [])
    assert filters("--reply", "false") == ([{"reply": [False]}], [])
    assert filters("-4") == ([{"ip_version": ["IPv4"]}], [])
    assert filters("-6", "--not", "-4") == ([{"ip_version": ["IPv6"]}], [{"ip_version": ["IPv4"]}])
    assert filters("-A") == ([], [])
    allow, _ = filters("--workload", "Deployment/web", "--reply", "true", "-4")
    flt = json_format.ParseDict(allow[0], flow_pb2.FlowFilter())
    assert flt.source_workload[0].kind == "Deployment" and list(flt.reply) == [True]
    assert list(flt.ip_version) == [flow_pb2.IPv4]
    with pytest.raises(FilterError, match="invalid --reply value: maybe"):
        filters("--reply", "maybe")
    with pytest.raises(FilterError, match="cannot be combined"):
        filters("-A", "-n", "default")
    with pytest.raises(FilterError, match="invalid workload"):
        filters("--workload", "Deployment/")


def test_numeric_prints_addresses() -> None:
    assert parse("--numeric").numeric and not parse().numeric


def test_agent_and_debug_events_take_selection_flags_only() -> None:
    args = parse("agent-events", "--last", "5", "-f")
    assert args.events == "agent-events"
    assert observe.build_events_request(args) == {"number": 5, "follow": True}
    assert parse().events is None
    with pytest.raises(FilterError, match="observe debug-events takes no filter flags"):
        observe.build_events_request(parse("debug-events", "--pod", "x"))


def test_fqdn_flags_match_the_names_hubble_knows_for_an_ip() -> None:
    from membrane.hubble.filters import compile_filter
    assert filters("--fqdn", "*.one.one") == ([{"source_fqdn": ["*.one.one"]}, {"destination_fqdn": ["*.one.one"]}], [])
    assert filters("--to-fqdn", "one.one.one.one") == ([{"destination_fqdn": ["one.one.one.one"]}], [])
    with pytest.raises(FilterError, match="cannot be combined"):
        filters("--fqdn", "a", "--to-fqdn", "b")
    match = compile_filter(flow_pb2.FlowFilter(destination_fqdn=["*.one.one"]))
    assert match(flow_pb2.Flow(destination_names=["one.one.one.one"]))
    assert not match(flow_pb2.Flow(destination_names=["ipinfo.io"]))
