"""mb_metrics: per-CPU packet/byte counters by (reason, direction) (bpf/lib/maps.h)."""

from __future__ import annotations

import ctypes
from ctypes import c_uint8, c_uint16, c_uint32, c_uint64
from typing import NamedTuple

from membrane.datapath.bpf.syscalls import map_keys
from membrane.datapath.maps.percpu import percpu_lookup, possible_cpus
from membrane.datapath.maps.pinned import BPF_MAP_TYPE_PERCPU_HASH, PinnedMap

MAP_NAME = "mb_metrics"

# Directions (Cilium's METRIC_INGRESS / METRIC_EGRESS), as seen from the endpoint.
METRIC_INGRESS = 1  # to the container
METRIC_EGRESS = 2  # from the container

# Reasons (REASON_FORWARDED, DROP_*) are defined once in membrane.model.datapath_codes.


class MetricsKey(ctypes.Structure):
    """struct metrics_key."""

    _fields_ = [("reason", c_uint8), ("dir", c_uint8), ("pad1", c_uint16), ("pad2", c_uint32)]


class MetricsValue(ctypes.Structure):
    """struct metrics_value (one per possible CPU)."""

    _fields_ = [("packets", c_uint64), ("bytes", c_uint64)]


class MetricKey(NamedTuple):
    reason: int
    direction: int


class MetricCounters(NamedTuple):
    packets: int
    bytes: int


class MetricsMap(PinnedMap):
    """``MetricsMap.open(pin_dir).read()``: counters summed over CPUs."""

    NAME = MAP_NAME
    MAP_TYPE = BPF_MAP_TYPE_PERCPU_HASH
    KEY = MetricsKey
    VALUE = MetricsValue

    def __init__(self, fd: int, path: str) -> None:
        super().__init__(fd, path)
        self.ncpus = possible_cpus()

    def read(self) -> dict[MetricKey, MetricCounters]:
        totals: dict[MetricKey, MetricCounters] = {}
        for key in map_keys(self.fd, MetricsKey, what=self.NAME):
            per_cpu = percpu_lookup(self.fd, key, MetricsValue, self.ncpus, what=self.NAME)
            if per_cpu is None:
                continue
            totals[MetricKey(key.reason, key.dir)] = MetricCounters(
                sum(v.packets for v in per_cpu), sum(v.bytes for v in per_cpu)
            )
        return totals
