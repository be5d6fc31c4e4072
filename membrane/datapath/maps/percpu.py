"""Per-CPU map values: how many CPUs the kernel reserves a slot for, and reading the slots."""

from __future__ import annotations

import ctypes

from membrane.datapath.bpf.syscalls import map_lookup

POSSIBLE_CPUS_FILE = "/sys/devices/system/cpu/possible"


def parse_cpu_list(text: str) -> int:
    """Number of CPUs in a kernel CPU list such as ``0-3,5,7-8``; ValueError if malformed."""
    count = 0
    for part in text.strip().split(","):
        low, sep, high = part.partition("-")
        first = int(low)
        last = int(high) if sep else first
        if first < 0 or last < first:
            raise ValueError(f"CPU list {text.strip()!r}: bad range {part!r}")
        count += last - first + 1
    return count


def possible_cpus(path: str = POSSIBLE_CPUS_FILE) -> int:
    """Per-CPU maps hold one value per *possible* CPU (not just online ones)."""
    with open(path) as f:
        return parse_cpu_list(f.read())


def percpu_lookup(fd: int, key: ctypes.Structure, value_type: type, ncpus: int, what: str) -> list | None:
    """Every CPU's value for ``key`` (None if absent). The kernel lays the values out with each
    rounded up to 8 bytes."""
    stride = (ctypes.sizeof(value_type) + 7) & ~7
    buf = ctypes.create_string_buffer(stride * ncpus)
    if not map_lookup(fd, key, buf, what):
        return None
    return [value_type.from_buffer_copy(buf, cpu * stride) for cpu in range(ncpus)]
