"""CEL flow filters: Hubble's `_flow` variable, enum constants, ORed expressions, failures as non-matches,
bad expressions refused; through FlowFilter.experimental and `observe --cel-expression`."""

from __future__ import annotations

import pytest
from google.protobuf import json_format

from membrane.hubble.cel import compile_cel
from membrane.hubble.filters import compile_filters
from membrane.hubble.proto.flow import flow_pb2
from tests.unit.test_observe_filters import filters


def _flow(verdict: int = flow_pb2.DROPPED, namespace: str = "default", port: int = 80) -> flow_pb2.Flow:
    f = flow_pb2.Flow(verdict=verdict, node_name="k8s-w1")
    f.source.namespace, f.source.pod_name = namespace, "client"
    f.source.labels.append("k8s:app=client")
    f.l4.TCP.destination_port = port
    return f


@pytest.mark.parametrize(("expr", "expected"), [
    ("_flow.verdict == Verdict.DROPPED", True),
    ("_flow.verdict == flow.Verdict.FORWARDED", False),
    ('_flow.source.namespace == "default" && _flow.l4.TCP.destination_port == 80', True),
    ('_flow.source.labels.exists(l, l == "k8s:app=client")', True),
    ('_flow.node_name.startsWith("k8s-w")', True),
    ('_flow.destination_service.name == ""', True),  # an unset message reads as empty
    ("_flow.l4.UDP.destination_port == 53", False),  # the other oneof member: an error, no match
    ("_flow.verdict", False),  # not a bool
])
def test_expressions(expr: str, expected: bool) -> None:
    assert compile_cel([expr])(_flow()) is expected


def test_expressions_are_ored_and_bad_ones_refused() -> None:
    match = compile_cel(["_flow.verdict == Verdict.FORWARDED", "_flow.l4.TCP.destination_port == 80"])
    assert match(_flow()) and not match(_flow(port=443))
    with pytest.raises(ValueError, match="error compiling CEL expression '_flow.verdict =='"):
        compile_cel(["_flow.verdict =="])


def test_flow_filters_and_the_cli_flag() -> None:
    allow, deny = filters("--cel-expression", "_flow.verdict == Verdict.DROPPED", "--not", "--cel-expression",
                          '_flow.source.namespace == "kube-system"')
    assert allow == [{"experimental": {"cel_expression": ["_flow.verdict == Verdict.DROPPED"]}}]
    wl = [json_format.ParseDict(f, flow_pb2.FlowFilter()) for f in allow]
    bl = [json_format.ParseDict(f, flow_pb2.FlowFilter()) for f in deny]
    match = compile_filters(wl, bl)
    assert match(_flow()) and not match(_flow(verdict=flow_pb2.FORWARDED))
    assert not match(_flow(namespace="kube-system"))
    with pytest.raises(ValueError, match="CEL"):
        compile_filters([flow_pb2.FlowFilter(experimental=flow_pb2.FlowFilter.Experimental(
            cel_expression=["(("]))], [])
