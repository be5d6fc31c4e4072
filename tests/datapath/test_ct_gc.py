"""Conntrack garbage collection on a real mb_ct: expired entries go, live ones stay; flush empties it."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import pytest

from membrane.datapath.bpf.bpf_object import BpfObject
from membrane.datapath.bpf.syscalls import map_update
from membrane.datapath.maps.conntrack import CT_EGRESS, ConntrackMap, CtEntry, CtKey

pytestmark = pytest.mark.root


@pytest.fixture
def loaded(pin_dir: str, lxc_object: str) -> Iterator[BpfObject]:
    with BpfObject.open(lxc_object, pin_root=pin_dir) as obj:
        obj.load()
        yield obj


def key(dport: int) -> CtKey:
    addr = struct.unpack("=I", socket.inet_aton("10.200.0.10"))[0]
    return CtKey(saddr=addr, daddr=addr + (1 << 24), sport=socket.htons(40000), dport=socket.htons(dport),
                 protocol=6, direction=CT_EGRESS)


def test_gc_removes_only_expired_entries(loaded: BpfObject, pin_dir: str) -> None:
    now = int(time.monotonic())
    with ConntrackMap.open(pin_dir) as ct:
        for port, lifetime in ((1, now - 100), (2, now), (3, now + 60), (4, now + 21600)):
            map_update(ct.fd, key(port), CtEntry(lifetime=lifetime, tx_packets=1), what="mb_ct")
        assert len(ct.rows(include_expired=True)) == 4
        assert ct.gc(now) == 2
        assert sorted(r.dport for r in ct.rows(include_expired=True)) == [3, 4]
        assert ct.gc(now) == 0
        assert ct.gc(now + 61) == 1  # time passes: the 60 s entry expires too
        assert [r.dport for r in ct.rows(include_expired=True)] == [4]
        assert ct.flush() == 1 and ct.rows(include_expired=True) == []
