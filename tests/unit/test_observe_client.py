"""`membrane observe` end to end against an in-process Observer on a unix socket, and its printers."""

from __future__ import annotations

import argparse
import io
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format

from membrane.cli import observe
from membrane.cli.arguments import CLIError
from membrane.cli.observe_output import FlowPrinter
from membrane.cli.observe_status import (
    from_server_status,
    hubble_status_dict,
    render_hubble_status,
    render_hubble_status_line,
)
from membrane.hubble.proto.flow import flow_pb2
from membrane.hubble.proto.observer import observer_pb2, observer_pb2_grpc

FLOW = {
    "time": "2025-01-10T09:15:02.123456789Z", "verdict": "FORWARDED", "node_name": "k8s-w1",
    "IP": {"source": "10.0.1.10", "destination": "10.0.1.20", "ipVersion": "IPv4"},
    "l4": {"ICMPv4": {"type": 8}},
    "source": {"ID": 1234, "identity": 54400, "namespace": "default", "pod_name": "netpod1"},
    "destination": {"ID": 2345, "identity": 54400, "namespace": "default", "pod_name": "netpod2"},
    "Type": "L3_L4", "event_type": {"type": 4}, "traffic_direction": "INGRESS",
    "trace_observation_point": "TO_ENDPOINT", "is_reply": False, "Summary": "ICMPv4 EchoRequest",
}
LINE = ("Jan 10 09:15:02.123: default/netpod1 (ID:54400) -> default/netpod2 (ID:54400) "
        "to-endpoint FORWARDED (ICMPv4 EchoRequest)")


def response(**flow: object) -> observer_pb2.GetFlowsResponse:
    f = json_format.ParseDict({**FLOW, **flow}, flow_pb2.Flow())
    return observer_pb2.GetFlowsResponse(flow=f, node_name=f.node_name, time=f.time)


def lost() -> observer_pb2.GetFlowsResponse:
    return json_format.ParseDict({"lost_events": {"source": "HUBBLE_RING_BUFFER", "num_events_lost": 3}},
                                 observer_pb2.GetFlowsResponse())


class FakeObserver(observer_pb2_grpc.ObserverServicer):
    def __init__(self) -> None:
        self.requests: list[observer_pb2.GetFlowsRequest] = []

    def GetFlows(self, request: observer_pb2.GetFlowsRequest, context: grpc.ServicerContext  # noqa: N802
                 ) -> Iterator[observer_pb2.GetFlowsResponse]:
        self.requests.append(request)
        yield response()
        yield lost()
        yield response(verdict="DROPPED", drop_reason_desc="POLICY_DENIED", event_type={"type": 1, "sub_type": 133},
                       Summary="ICMPv4 EchoRequest", is_reply=None)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, FakeObserver]]:
    servicer = FakeObserver()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    observer_pb2_grpc.add_ObserverServicer_to_server(servicer, srv)
    target = f"unix://{tmp_path}/relay.sock"
    srv.add_insecure_port(target)
    srv.start()
    try:
        yield target, servicer
    finally:
        srv.stop(grace=None)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    observe.add_parser(parser.add_subparsers())
    args = parser.parse_args(["observe", *argv])
    args.lab = "membrane"
    return args


def test_observe_streams_and_prints_compact(server: tuple[str, FakeObserver],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    target, servicer = server
    args = parse("--server", target, "--to-pod", "default/netpod2", "--last", "2")
    assert observe.run(args) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split(": ", 1)[1] == LINE.split(": ", 1)[1]  # the time is printed in local time
    assert "Policy denied DROPPED" in lines[1] and "<>" in lines[1]
    assert "EVENTS LOST: HUBBLE_RING_BUFFER 3" in err
    req = servicer.requests[0]
    assert req.number == 2 and not req.follow
    assert list(req.whitelist[0].destination_pod) == ["default/netpod2"]


def test_observe_json(server: tuple[str, FakeObserver], capsys: pytest.CaptureFixture[str]) -> None:
    target, _ = server
    assert observe.run(parse("--server", target, "-o", "json")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith('{"flow":{') and '"node_name":"k8s-w1"' in lines[0]
    assert '"lost_events"' in lines[1]


def test_unreachable_server(tmp_path: Path) -> None:
    with pytest.raises(CLIError, match="cannot connect"):
        observe.run(parse("--server", f"unix://{tmp_path}/none.sock", "--timeout", "0.2"))


def test_printers() -> None:
    out, err = io.StringIO(), io.StringIO()
    printer = FlowPrinter("dict", errors=err, tz=None)
    for resp in (response(), lost(), response()):
        printer.write(resp, out)
    printer.close(out)
    text = out.getvalue()
    assert text.count("------------\n") == 1 and "  TIMESTAMP: " in text and "EVENTS LOST" in err.getvalue()
    out = io.StringIO()
    printer = FlowPrinter("table", print_node_name=True)
    printer.write(response(), out)
    assert out.getvalue() == ""
    printer.close(out)
    assert out.getvalue().splitlines()[0].split() == ["TIMESTAMP", "NODE", "SOURCE", "DESTINATION", "TYPE",
                                                      "VERDICT", "SUMMARY"]


def test_status_line() -> None:
    assert render_hubble_status_line(12, 4095, 1.5) == (
        "Hubble:   Ok   Current/Max Flows: 12/4095 (0.29%), Flows/s: 1.50")
    assert render_hubble_status(4095, 4095, 12.345, metrics_state="Ok") == (
        "Ok   Current/Max Flows: 4095/4095 (100.00%), Flows/s: 12.35   Metrics: Ok")
    resp = observer_pb2.ServerStatusResponse(num_flows=10, max_flows=4095, seen_flows=100, uptime_ns=50 * 10**9)
    assert from_server_status(resp) == (10, 4095, 2.0)
    assert hubble_status_dict(10, 4095, 100, 50.0)["observer"]["max-flows"] == 4095
