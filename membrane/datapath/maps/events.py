"""mb_events records (bpf/lib/maps.h struct event_record) and their decoding, plus the two small
maps around the ring buffer: mb_config (the events switch) and mb_event_stats (written / lost).

The numbers in a record (event types, trace points and reasons, policy match types and actions,
drop reasons) are Cilium's, defined once in membrane.model.datapath_codes.
"""

from __future__ import annotations

import ctypes
import struct
from ctypes import c_uint8, c_uint16, c_uint32, c_uint64
from dataclasses import dataclass

from membrane.datapath.bpf.syscalls import map_lookup, map_update
from membrane.datapath.maps.percpu import percpu_lookup, possible_cpus
from membrane.datapath.maps.pinned import PinnedMap
from membrane.model.datapath_codes import (
    EVENT_DROP,
    EVENT_POLICY_VERDICT,
    EVENT_TRACE,
    POLICY_ACTION_ALLOW,
    TRACE_REASON_ESTABLISHED,
    TRACE_REASON_NEW,
    TRACE_REASON_RELATED,
    TRACE_REASON_REPLY,
)
from membrane.model.monitor_aggregation import MAXIMUM, MonitorAggregation

EVENTS_MAP = "mb_events"
CONFIG_MAP = "mb_config"
STATS_MAP = "mb_event_stats"
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_RINGBUF = 27
EVENT_CAPTURE_LEN = 128

# event_record.direction (the metrics map's directions, as seen from the endpoint)
DIRECTION_INGRESS = 1
DIRECTION_EGRESS = 2

# datapath_config.flags
CONFIG_F_EVENTS_DISABLED = 1 << 0


class EventRecord(ctypes.Structure):
    """struct event_record: the header, then the packet's first ``cap_len`` bytes."""

    _fields_ = [
        ("type", c_uint8),
        ("subtype", c_uint8),
        ("ep_id", c_uint16),
        ("flags", c_uint16),
        ("drop_reason", c_uint8),
        ("trace_reason", c_uint8),
        ("ktime", c_uint64),
        ("ifindex", c_uint32),
        ("orig_len", c_uint32),
        ("cap_len", c_uint32),
        ("src_identity", c_uint32),
        ("dst_identity", c_uint32),
        ("direction", c_uint8),
        ("match_type", c_uint8),
        ("action", c_uint8),
        ("protocol", c_uint8),
        ("dport", c_uint16),
        ("pad1", c_uint16),
        ("pad2", c_uint32),
        ("data", c_uint8 * EVENT_CAPTURE_LEN),
    ]


EVENT_HEADER_LEN = EventRecord.data.offset
# The same header for struct.unpack_from (decoding with it costs a third of a ctypes copy per event);
# test_datapath_events checks it against EventRecord field by field.
HEADER = struct.Struct("<BBHHBBQIIIIIBBBBHHI")
HEADER_FIELDS = ("type", "subtype", "ep_id", "flags", "drop_reason", "trace_reason", "ktime", "ifindex",
                 "orig_len", "cap_len", "src_identity", "dst_identity", "direction", "match_type", "action",
                 "protocol", "dport", "pad1", "pad2")


class ArrayKey(ctypes.Structure):
    """The u32 index of an array map."""

    _fields_ = [("index", c_uint32)]


class DatapathConfig(ctypes.Structure):
    """struct datapath_config (mb_config, key 0)."""

    _fields_ = [("flags", c_uint32), ("aggregation", c_uint8), ("report_flags", c_uint8),
                ("report_interval", c_uint16)]


class EventStats(ctypes.Structure):
    """struct event_stats (mb_event_stats, key 0, one per possible CPU)."""

    _fields_ = [("emitted", c_uint64), ("lost", c_uint64)]


# (C struct name, Python mirror) of the structs above, for the BTF layout check
EVENT_MIRRORS: tuple[tuple[str, type[ctypes.Structure]], ...] = (
    ("event_record", EventRecord),
    ("datapath_config", DatapathConfig),
    ("event_stats", EventStats),
)


class EventDecodeError(ValueError):
    """A record that is not a struct event_record."""


@dataclass(frozen=True)
class DatapathEvent:
    """One decoded record. Fields that do not apply to the event type are 0."""

    type: int  # EVENT_*
    subtype: int  # trace: TRACE_* observation point; drop: the drop reason
    ep_id: int  # endpoint whose hook emitted it (0 unknown)
    ifindex: int
    direction: int  # DIRECTION_INGRESS (to the endpoint) / DIRECTION_EGRESS (from it)
    src_identity: int
    dst_identity: int
    drop_reason: int  # drops and denied policy verdicts
    trace_reason: int  # TRACE_REASON_*
    match_type: int  # policy verdict: POLICY_MATCH_*
    action: int  # policy verdict: POLICY_ACTION_*
    protocol: int  # IP protocol
    dport: int  # policy verdict: destination port or ICMP type
    ktime_ns: int  # CLOCK_MONOTONIC of the event
    timestamp_ns: int  # wall clock (ktime_ns + the boot offset given to decode)
    orig_len: int  # length of the packet
    packet: bytes  # its first bytes, from the Ethernet header
    flags: int = 0

    @property
    def is_trace(self) -> bool:
        return self.type == EVENT_TRACE

    @property
    def is_drop(self) -> bool:
        return self.type == EVENT_DROP

    @property
    def is_policy_verdict(self) -> bool:
        return self.type == EVENT_POLICY_VERDICT

    @property
    def observation_point(self) -> int | None:
        """The trace observation point (TRACE_*), None for other events."""
        return self.subtype if self.type == EVENT_TRACE else None

    @property
    def is_reply(self) -> bool | None:
        """Reply direction of the connection: known for traces with a conntrack reason
        (Hubble's rule), False for allowed policy verdicts, unknown (None) otherwise."""
        if self.type == EVENT_TRACE and self.trace_reason in (TRACE_REASON_NEW, TRACE_REASON_ESTABLISHED,
                                                              TRACE_REASON_REPLY, TRACE_REASON_RELATED):
            return self.trace_reason == TRACE_REASON_REPLY
        if self.type == EVENT_POLICY_VERDICT and self.action == POLICY_ACTION_ALLOW:
            return False
        return None


def decode(raw: bytes, boot_offset_ns: int = 0) -> DatapathEvent:
    """Decode one ring buffer record. ``boot_offset_ns`` is wall clock minus CLOCK_MONOTONIC
    (see :func:`monotonic_offset_ns`), for ``timestamp_ns``. Raises EventDecodeError."""
    if len(raw) < EVENT_HEADER_LEN:
        raise EventDecodeError(f"event record of {len(raw)} bytes, the header alone is {EVENT_HEADER_LEN}")
    (type_, subtype, ep_id, flags, drop_reason, trace_reason, ktime, ifindex, orig_len, cap_len, src_identity,
     dst_identity, direction, match_type, action, protocol, dport, _p1, _p2) = HEADER.unpack_from(raw)
    if cap_len > EVENT_CAPTURE_LEN:
        raise EventDecodeError(f"event record captures {cap_len} bytes, at most {EVENT_CAPTURE_LEN} fit")
    start = EVENT_HEADER_LEN
    return DatapathEvent(
        type=type_, subtype=subtype, ep_id=ep_id, ifindex=ifindex, direction=direction,
        src_identity=src_identity, dst_identity=dst_identity, drop_reason=drop_reason,
        trace_reason=trace_reason, match_type=match_type, action=action, protocol=protocol,
        dport=dport, ktime_ns=ktime, timestamp_ns=ktime + boot_offset_ns, orig_len=orig_len,
        packet=bytes(raw[start : start + cap_len]), flags=flags,
    )


def encode(event: DatapathEvent) -> bytes:
    """The record the datapath would write for ``event`` (for tests and replay tools)."""
    if len(event.packet) > EVENT_CAPTURE_LEN:
        raise ValueError(f"packet bytes: {len(event.packet)} given, at most {EVENT_CAPTURE_LEN} fit")
    rec = EventRecord(
        type=event.type, subtype=event.subtype, ep_id=event.ep_id, flags=event.flags,
        drop_reason=event.drop_reason, trace_reason=event.trace_reason, ktime=event.ktime_ns,
        ifindex=event.ifindex, orig_len=event.orig_len, cap_len=len(event.packet),
        src_identity=event.src_identity, dst_identity=event.dst_identity, direction=event.direction,
        match_type=event.match_type, action=event.action, protocol=event.protocol, dport=event.dport,
    )
    ctypes.memmove(ctypes.addressof(rec) + EVENT_HEADER_LEN, event.packet, len(event.packet))
    return bytes(rec)


class ConfigMap(PinnedMap):
    """``ConfigMap.open(pin_dir)``: the datapath's runtime switches (mb_config)."""

    NAME = CONFIG_MAP
    MAP_TYPE = BPF_MAP_TYPE_ARRAY
    KEY = ArrayKey
    VALUE = DatapathConfig

    def read(self) -> DatapathConfig:
        value = DatapathConfig()
        map_lookup(self.fd, ArrayKey(0), value, what=self.NAME)
        return value

    def events_enabled(self) -> bool:
        return not self.read().flags & CONFIG_F_EVENTS_DISABLED

    def set_events_enabled(self, enabled: bool) -> None:
        self._set_flag(CONFIG_F_EVENTS_DISABLED, not enabled)

    def aggregation(self) -> MonitorAggregation:
        """The monitor aggregation the datapath applies (a fresh map's zeros are Cilium's defaults)."""
        value, default = self.read(), MonitorAggregation()
        level = value.aggregation - 1 if 0 < value.aggregation <= MAXIMUM + 1 else default.level
        return MonitorAggregation(level, value.report_interval or default.interval, value.report_flags or default.flags)

    def set_aggregation(self, agg: MonitorAggregation) -> None:
        """Trace events from now on at ``agg`` (bpf/lib/monitor_aggregation.h); other switches kept."""
        value = self.read()
        value.aggregation, value.report_flags, value.report_interval = agg.level + 1, agg.flags & 0xFF, agg.interval
        map_update(self.fd, ArrayKey(0), value, what=self.NAME)

    def _set_flag(self, flag: int, on: bool) -> None:
        value = self.read()
        if on:
            value.flags |= flag
        else:
            value.flags &= ~flag
        map_update(self.fd, ArrayKey(0), value, what=self.NAME)


class EventStatsMap(PinnedMap):
    """``EventStatsMap.open(pin_dir).read()``: (records written, records lost), over all CPUs."""

    NAME = STATS_MAP
    MAP_TYPE = BPF_MAP_TYPE_PERCPU_ARRAY
    KEY = ArrayKey
    VALUE = EventStats

    def __init__(self, fd: int, path: str) -> None:
        super().__init__(fd, path)
        self.ncpus = possible_cpus()

    def read(self) -> tuple[int, int]:
        per_cpu = percpu_lookup(self.fd, ArrayKey(0), EventStats, self.ncpus, what=self.NAME) or []
        return sum(v.emitted for v in per_cpu), sum(v.lost for v in per_cpu)
