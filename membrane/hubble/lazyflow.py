"""Flows kept compact until someone looks: a :class:`LazyFlow` holds what is needed to build its
``flow.Flow`` (the raw datapath record and the agent's answers about it, taken when the event
arrived) and builds the protobuf on first use only, once. The flow ring stores them beside ready
flows and hands out flows; a flood nobody observes costs no protobuf at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from membrane.hubble.proto.flow import flow_pb2


class LazyFlow:
    """``LazyFlow(build, record, answers, seq).flow()``: ``build(self)`` makes the Flow from
    ``record`` (what the datapath wrote), ``answers`` (what the agent's lookups said when the
    event arrived) and ``seq`` (its UUID number); it runs once, on first use. Concurrent first
    uses may both build: ``build`` is deterministic, so they build equal flows."""

    __slots__ = ("_build", "_flow", "answers", "record", "seq")

    def __init__(self, build: Callable[[LazyFlow], flow_pb2.Flow], record: bytes, answers: Any, seq: int) -> None:
        self._build = build
        self._flow: flow_pb2.Flow | None = None
        self.record = record
        self.answers = answers
        self.seq = seq

    @property
    def built(self) -> bool:
        return self._flow is not None

    def flow(self) -> flow_pb2.Flow:
        f = self._flow
        if f is None:
            f = self._flow = self._build(self)
        return f


FlowEntry = flow_pb2.Flow | LazyFlow


def materialise(entries: Iterable[FlowEntry]) -> list[flow_pb2.Flow]:
    """The flows of ``entries``, building the lazy ones."""
    return [e.flow() if type(e) is LazyFlow else e for e in entries]  # type: ignore[union-attr,misc]
