"""Decoding mb_events records (struct event_record in bpf/lib/maps.h) without root.

The records here are packed by hand from the C layout with ``struct``, independently of the
ctypes mirror, so a mirror that drifts from the header fails here as well as in the BTF check.
"""

from __future__ import annotations

import ctypes
import struct

import pytest

from membrane.datapath.maps.events import (
    DIRECTION_EGRESS,
    DIRECTION_INGRESS,
    EVENT_CAPTURE_LEN,
    EVENT_HEADER_LEN,
    DatapathEvent,
    EventDecodeError,
    EventRecord,
    decode,
    encode,
)
from membrane.model.datapath_codes import (
    EVENT_DROP,
    EVENT_POLICY_VERDICT,
    EVENT_TRACE,
    POLICY_ACTION_ALLOW,
    POLICY_ACTION_DENY,
    POLICY_MATCH_L3_L4,
    POLICY_MATCH_NONE,
    TRACE_FROM_LXC,
    TRACE_REASON_ESTABLISHED,
    TRACE_REASON_NEW,
    TRACE_REASON_REPLY,
    TRACE_REASON_UNKNOWN,
    TRACE_TO_LXC,
    TRACE_TO_STACK,
)

# type subtype ep_id flags drop_reason trace_reason | ktime | ifindex orig_len cap_len src dst |
# direction match_type action protocol dport pad1 | pad2
HEADER = struct.Struct("<BBHHBBQIIIIIBBBBHHI")
ICMP_ECHO_FRAME = bytes.fromhex(
    "0e000000000b0a000000000a0800"  # Ethernet: dst, src, IPv4
    "4500002400001234400100000ac8000a0ac8000b"  # IPv4 10.200.0.10 -> 10.200.0.11, ICMP
    "08000000000100016d656d6272616e65"  # echo request id 1 seq 1 "membrane"
)


def record(kind: int, subtype: int, *, ep_id: int = 7, drop_reason: int = 0, trace_reason: int = TRACE_REASON_NEW,
           ktime: int = 5_000_000_000, ifindex: int = 12, packet: bytes = ICMP_ECHO_FRAME, orig_len: int | None = None,
           src: int = 1001, dst: int = 1002, direction: int = DIRECTION_EGRESS, match_type: int = 0, action: int = 0,
           protocol: int = 1, dport: int = 8) -> bytes:
    header = HEADER.pack(kind, subtype, ep_id, 0, drop_reason, trace_reason, ktime, ifindex,
                         len(packet) if orig_len is None else orig_len, min(len(packet), EVENT_CAPTURE_LEN), src, dst,
                         direction, match_type, action, protocol, dport, 0, 0)
    data = packet[:EVENT_CAPTURE_LEN]
    return header + data + bytes(EVENT_CAPTURE_LEN - len(data))


def test_the_mirror_has_the_c_layout() -> None:
    assert HEADER.size == EVENT_HEADER_LEN == 48
    assert ctypes.sizeof(EventRecord) == 48 + EVENT_CAPTURE_LEN == 176


def test_a_trace_decodes_with_its_observation_point_identities_and_packet() -> None:
    event = decode(record(EVENT_TRACE, TRACE_FROM_LXC), boot_offset_ns=1_700_000_000_000_000_000)
    assert event.is_trace and not event.is_drop and not event.is_policy_verdict
    assert event.observation_point == TRACE_FROM_LXC
    assert (event.ep_id, event.ifindex, event.direction) == (7, 12, DIRECTION_EGRESS)
    assert (event.src_identity, event.dst_identity) == (1001, 1002)
    assert event.trace_reason == TRACE_REASON_NEW and event.is_reply is False
    assert event.ktime_ns == 5_000_000_000
    assert event.timestamp_ns == 1_700_000_005_000_000_000
    assert event.packet == ICMP_ECHO_FRAME and event.orig_len == len(ICMP_ECHO_FRAME)
    assert (event.protocol, event.dport) == (1, 8)


def test_a_reply_trace_is_a_reply() -> None:
    event = decode(record(EVENT_TRACE, TRACE_TO_LXC, trace_reason=TRACE_REASON_REPLY, direction=DIRECTION_INGRESS))
    assert event.is_reply is True and event.observation_point == TRACE_TO_LXC
    assert decode(record(EVENT_TRACE, TRACE_TO_STACK, trace_reason=TRACE_REASON_ESTABLISHED)).is_reply is False
    assert decode(record(EVENT_TRACE, TRACE_TO_STACK, trace_reason=TRACE_REASON_UNKNOWN)).is_reply is None


def test_a_drop_carries_its_reason_and_no_reply_direction() -> None:
    event = decode(record(EVENT_DROP, 133, drop_reason=133, trace_reason=TRACE_REASON_NEW,
                          direction=DIRECTION_INGRESS))
    assert event.is_drop and event.observation_point is None
    assert event.drop_reason == event.subtype == 133
    assert event.is_reply is None


def test_a_policy_verdict_carries_direction_match_action_and_port() -> None:
    denied = decode(record(EVENT_POLICY_VERDICT, 0, drop_reason=181, direction=DIRECTION_INGRESS,
                           match_type=POLICY_MATCH_L3_L4, action=POLICY_ACTION_DENY, protocol=6, dport=80))
    assert denied.is_policy_verdict
    assert (denied.direction, denied.match_type, denied.action, denied.protocol, denied.dport) == (
        DIRECTION_INGRESS, POLICY_MATCH_L3_L4, POLICY_ACTION_DENY, 6, 80)
    assert denied.drop_reason == 181 and denied.is_reply is None
    allowed = decode(record(EVENT_POLICY_VERDICT, 0, match_type=POLICY_MATCH_NONE, action=POLICY_ACTION_ALLOW))
    assert allowed.is_reply is False


def test_only_the_captured_bytes_are_the_packet() -> None:
    big = bytes(range(256)) * 6
    event = decode(record(EVENT_TRACE, TRACE_TO_STACK, packet=big))
    assert event.packet == big[:EVENT_CAPTURE_LEN]
    assert event.orig_len == len(big)
    short = decode(record(EVENT_TRACE, TRACE_TO_STACK, packet=b"\x01\x02\x03"))
    assert short.packet == b"\x01\x02\x03"


def test_encode_is_the_inverse_of_decode() -> None:
    raw = record(EVENT_POLICY_VERDICT, 0, drop_reason=133, match_type=POLICY_MATCH_NONE, action=POLICY_ACTION_DENY)
    event = decode(raw)
    assert encode(event) == raw
    assert decode(encode(event)) == event


def test_a_record_shorter_than_the_header_is_refused() -> None:
    with pytest.raises(EventDecodeError, match="header alone is 48"):
        decode(record(EVENT_TRACE, TRACE_TO_LXC)[:40])


def test_a_capture_length_beyond_the_buffer_is_refused() -> None:
    raw = bytearray(record(EVENT_TRACE, TRACE_TO_LXC))
    struct.pack_into("<I", raw, 24, EVENT_CAPTURE_LEN + 1)  # cap_len
    with pytest.raises(EventDecodeError, match="captures 129 bytes"):
        decode(bytes(raw))


def test_a_record_without_the_unused_tail_still_decodes() -> None:
    raw = record(EVENT_TRACE, TRACE_TO_LXC, packet=b"\xaa" * 20)
    assert decode(raw[: EVENT_HEADER_LEN + 20]).packet == b"\xaa" * 20


def test_encode_refuses_more_bytes_than_fit() -> None:
    event = decode(record(EVENT_TRACE, TRACE_TO_LXC))
    too_long = DatapathEvent(**{**event.__dict__, "packet": bytes(EVENT_CAPTURE_LEN + 1)})
    with pytest.raises(ValueError, match="at most 128"):
        encode(too_long)


def test_struct_header_matches_the_ctypes_record() -> None:
    """decode() reads the header with struct; its layout must be EventRecord's, field by field."""
    import struct

    from membrane.datapath.maps import events as ev

    assert ev.HEADER.size == ev.EVENT_HEADER_LEN
    fmt = ev.HEADER.format[1:]
    for i, name in enumerate(ev.HEADER_FIELDS):
        field = getattr(ev.EventRecord, name)
        assert struct.calcsize("<" + fmt[:i]) == field.offset, name
        assert struct.calcsize("<" + fmt[i]) == field.size, name
