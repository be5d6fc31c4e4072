"""CEL flow filters (``FlowFilter.experimental.cel_expression``, ``observe --cel-expression``), evaluated
with cel-python.

As Hubble does: the flow is the variable ``_flow`` with the ``flow.Flow`` field names, the enums of package
``flow`` are named constants (``Verdict.DROPPED``, ``flow.Verdict.DROPPED``, ``TrafficDirection.INGRESS``),
a filter's expressions are ORed, an expression must give a bool, and one that fails on a flow (a missing
map key, a wrong type) does not match it. An unset message field reads as the empty message, as with
protobuf, so ``_flow.source_service.name == ""`` holds for a flow without a Service.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import celpy
from celpy import celtypes
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from membrane.hubble.proto.flow import flow_pb2

FLOW_VARIABLE = "_flow"
_ENV = celpy.Environment()


def _enum_constants() -> dict[str, Any]:
    enums = {name: {v.name: v.number for v in enum.values}
             for name, enum in flow_pb2.DESCRIPTOR.enum_types_by_name.items()}
    return {**enums, "flow": dict(enums)}


_CONSTANTS = celpy.json_to_cel(_enum_constants())


def _with_defaults(data: dict[str, Any], desc: Descriptor, depth: int = 0) -> dict[str, Any]:
    """Unset singular message fields become empty messages (with their own defaults), as protobuf reads."""
    if depth > 4:
        return data
    for field in desc.fields:
        if field.type != FieldDescriptor.TYPE_MESSAGE or field.is_repeated:
            continue
        if field.message_type.full_name.startswith("google.protobuf."):
            continue
        sub = data.get(field.name)
        if isinstance(sub, dict):
            _with_defaults(sub, field.message_type, depth + 1)
        elif sub is None and field.containing_oneof is None:
            empty = json_format.MessageToDict(
                _message_class(field.message_type)(), preserving_proto_field_name=True, use_integers_for_enums=True,
                always_print_fields_with_no_presence=True)
            data[field.name] = _with_defaults(empty, field.message_type, depth + 1)
    return data


def _message_class(desc: Descriptor) -> Any:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(desc)


def flow_value(flow: flow_pb2.Flow) -> Any:
    data = json_format.MessageToDict(flow, preserving_proto_field_name=True, use_integers_for_enums=True,
                                     always_print_fields_with_no_presence=True)
    return celpy.json_to_cel(_with_defaults(data, flow.DESCRIPTOR))


def compile_cel(expressions: Sequence[str]) -> Callable[[flow_pb2.Flow], bool]:
    """A predicate true when any expression is true for the flow; ValueError names a bad expression."""
    programs = []
    for expr in expressions:
        try:
            programs.append(_ENV.program(_ENV.compile(expr)))
        except celpy.CELParseError as exc:
            raise ValueError(f"error compiling CEL expression {expr!r}: {str(exc).splitlines()[0]}") from None

    def match(flow: flow_pb2.Flow) -> bool:
        activation = {**_CONSTANTS, FLOW_VARIABLE: flow_value(flow)}
        for program in programs:
            try:
                out = program.evaluate(activation)
            except Exception:  # noqa: BLE001 - an expression failing on one flow does not match it
                continue
            if isinstance(out, celtypes.BoolType | bool) and bool(out):  # only a bool result counts
                return True
        return False

    return match
