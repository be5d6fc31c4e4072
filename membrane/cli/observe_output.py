"""How ``membrane observe`` prints the GetFlows stream: one FlowPrinter per run, per ``-o`` format.

Flows go through :mod:`membrane.hubble.render` (compact lines, protojson, dict blocks, a table printed at
the end). ``-o json``/``jsonpb`` print every response as hubble does (flows, node status, lost events);
the text formats print flows and report lost events on stderr. Times are local, like hubble's.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from membrane.hubble import render


class FlowPrinter:
    def __init__(self, output: str = "compact", *, print_node_name: bool = False, tz: Any = None,
                 errors: TextIO | None = None, numeric: bool = False, time_format: str = "StampMilli",
                 policy_names: bool = False) -> None:
        self.output = "json" if output == "jsonpb" else output
        self.kwargs: dict[str, Any] = {"node_name": print_node_name, "tz": tz, "numeric": numeric,
                                       "time_format": time_format, "policy_names": policy_names}
        self.errors = errors
        self.count = 0
        self._table: list[Any] = []

    def _err(self) -> TextIO:
        return self.errors or sys.stderr

    def write(self, response: Any, out: TextIO) -> None:
        """Print one ``GetFlowsResponse``."""
        kind = response.WhichOneof("response_types")
        if self.output == "json":
            out.write(render.jsonpb(response) + "\n")
            out.flush()
            return
        if kind == "lost_events":
            lost = response.lost_events
            source = lost.DESCRIPTOR.fields_by_name["source"].enum_type.values_by_number.get(lost.source)
            self._err().write(f"EVENTS LOST: {source.name if source else lost.source} {lost.num_events_lost}\n")
            return
        if kind != "flow":
            return
        flow = response.flow
        if not flow.node_name and response.node_name:
            flow.node_name = response.node_name
        self.count += 1
        if self.output == "table":
            self._table.append(flow)
            return
        if self.output == "dict":
            if self.count > 1:
                out.write("------------\n")
            out.write(render.dict_block(flow, **self.kwargs) + "\n")
        else:
            out.write(render.compact(flow, **self.kwargs) + "\n")
        out.flush()

    def close(self, out: TextIO) -> None:
        """Finish the output (``-o table`` prints here)."""
        if self.output == "table" and self._table:
            out.write(render.table(self._table, **self.kwargs) + "\n")
            out.flush()
        self._table = []


class EventPrinter:
    """Prints a Get{Agent,Debug}Events stream: ``<time> [node]: TYPE (details)`` or protojson lines."""

    def __init__(self, output: str = "compact", *, print_node_name: bool = False,
                 time_format: str = "StampMilli") -> None:
        self.output = "json" if output == "jsonpb" else output
        self.node_name = print_node_name
        self.time_format = time_format

    def write(self, response: Any, out: TextIO) -> None:
        from google.protobuf import json_format

        from membrane.hubble.agent_events import describe
        from membrane.hubble.timefmt import timestamp

        if self.output == "json":
            out.write(json.dumps(json_format.MessageToDict(response, preserving_proto_field_name=True),
                                 separators=(",", ":")) + "\n")
        else:
            node = f" [{response.node_name}]" if self.node_name else ""
            if response.HasField("agent_event"):
                text = describe(response.agent_event)
            else:
                event = response.debug_event
                text = f"{event.message or event.type}"
            out.write(f"{timestamp(response, None, self.time_format)}{node}: {text}\n")
        out.flush()

    def close(self, out: TextIO) -> None:
        pass
