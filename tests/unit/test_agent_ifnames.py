"""Flows name the interface their event was recorded on (``hubble observe --interface eth1``)."""

from __future__ import annotations

import socket

from membrane.agent.flows import to_flow_event
from membrane.agent.ifnames import interface_name
from membrane.datapath.maps.events import DatapathEvent
from membrane.model.datapath_codes import EVENT_TRACE, TRACE_TO_NETWORK


def test_an_index_is_named_as_the_kernel_names_it() -> None:
    lo = socket.if_nametoindex("lo")
    assert interface_name(lo) == "lo"


def test_no_index_or_a_missing_one_has_no_name() -> None:
    assert interface_name(0) == ""
    assert interface_name(2**31 - 1) == ""


def test_flow_events_carry_the_name() -> None:
    ev = DatapathEvent(type=EVENT_TRACE, subtype=TRACE_TO_NETWORK, ep_id=0, ifindex=socket.if_nametoindex("lo"),
                       direction=0, src_identity=1, dst_identity=6, drop_reason=0, trace_reason=5, match_type=0,
                       action=0, protocol=6, dport=80, ktime_ns=1, timestamp_ns=1, orig_len=60, packet=b"", flags=0)
    flow_event = to_flow_event(ev, "k8s-ctr")
    assert flow_event is not None and flow_event.ifname == "lo" and flow_event.ifindex == ev.ifindex
