"""An in-memory node datapath: the agent's maps behind the same interfaces, without root or a kernel.

``FakeDatapath`` has the ``ipcache``, ``endpoints``, ``policy`` and ``lb`` attributes of ``NodeDatapath``: the
ipcache and policy maps are dicts with the typed methods the agent and the map ops use, and ``lb``
is the real ``LBMaps`` over in-memory hash maps (so its slot ordering and backend bookkeeping run
unchanged). ``faults`` makes chosen writes fail, as a full map or a refused update would: tests use
it to show that one failing row does not stop the others and converges once the fault clears.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
from collections.abc import Callable
from typing import Any

from membrane.datapath.bpf.errors import BpfError
from membrane.datapath.maps import lb as lbm
from membrane.datapath.maps.endpoints import EndpointRecord
from membrane.datapath.maps.host_endpoint import HostEndpointState
from membrane.datapath.maps.ipcache import IDENTITY_WORLD, IpcacheEntry, ipv4_prefix
from membrane.datapath.maps.policy import PolicySlot, SlotState, Verdict


class Faults:
    """``fail(map_name, key)``: every write of that key (any key when None) to that map raises until
    ``clear``; ``writes`` counts the attempts per map."""

    def __init__(self) -> None:
        self._rules: dict[str, list[Callable[[Any], bool]]] = {}
        self.writes: dict[str, int] = {}

    def fail(self, map_name: str, key: Any = None) -> None:
        self._rules.setdefault(map_name, []).append((lambda _k: True) if key is None else (lambda k: k == key))

    def clear(self, map_name: str | None = None) -> None:
        if map_name is None:
            self._rules.clear()
        else:
            self._rules.pop(map_name, None)

    def check(self, map_name: str, key: Any) -> None:
        self.writes[map_name] = self.writes.get(map_name, 0) + 1
        if any(rule(key) for rule in self._rules.get(map_name, ())):
            raise BpfError(errno.E2BIG, f"map_update {map_name} {key}", "injected fault")


class MemIpcacheMap:
    """mb_ipcache as a dict of prefix -> entry, with the LPM lookup the datapath does."""

    NAME = "mb_ipcache"

    def __init__(self, faults: Faults) -> None:
        self.entries: dict[str, IpcacheEntry] = {}
        self._faults = faults

    def update(self, prefix: str, entry: IpcacheEntry) -> None:
        key = str(ipv4_prefix(prefix))
        self._faults.check(self.NAME, key)
        self.entries[key] = entry

    def delete(self, prefix: str) -> bool:
        key = str(ipv4_prefix(prefix))
        self._faults.check(self.NAME, key)
        return self.entries.pop(key, None) is not None

    def items(self) -> list[tuple[str, IpcacheEntry]]:
        return sorted(self.entries.items(), key=lambda kv: ipaddress.IPv4Network(kv[0]))

    def lookup(self, ip: str) -> IpcacheEntry | None:
        address = ipaddress.IPv4Address(ip)
        best = None
        for prefix, entry in self.entries.items():
            net = ipaddress.IPv4Network(prefix)
            if address in net and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, entry)
        return best[1] if best else None

    def identity_of(self, ip: str) -> int:
        entry = self.lookup(ip)
        return entry.identity if entry else IDENTITY_WORLD

    def rows(self) -> list[tuple[str, str]]:
        return [(prefix, entry.describe()) for prefix, entry in self.items()]


class MemPolicyMap:
    """mb_policy as a dict of slot -> verdict (counters stay 0)."""

    NAME = "mb_policy"

    def __init__(self, faults: Faults) -> None:
        self.slots: dict[PolicySlot, Verdict] = {}
        self._faults = faults

    def write_slot(self, slot: PolicySlot, verdict: Verdict) -> None:
        self._faults.check(self.NAME, slot)
        self.slots[slot] = verdict

    def delete_slot(self, slot: PolicySlot) -> bool:
        self._faults.check(self.NAME, slot)
        return self.slots.pop(slot, None) is not None

    def items(self) -> dict[PolicySlot, SlotState]:
        return {slot: SlotState(v, 0, 0) for slot, v in sorted(self.slots.items())}


class MemEndpointsMap:
    """mb_endpoints (pod IP -> record) with mb_lxc (ifindex -> pod IP) kept in step, as EndpointsMap does."""

    NAME = "mb_endpoints"

    def __init__(self, faults: Faults) -> None:
        self.entries: dict[str, EndpointRecord] = {}
        self.devices: dict[int, str] = {}
        self._faults = faults

    def update(self, ip: str, record: EndpointRecord) -> None:
        self._faults.check(self.NAME, ip)
        previous = self.entries.get(ip)
        self.entries[ip] = record
        self.devices[record.ifindex] = ip
        if previous is not None and previous.ifindex != record.ifindex and self.devices.get(previous.ifindex) == ip:
            del self.devices[previous.ifindex]

    def delete(self, ip: str) -> bool:
        self._faults.check(self.NAME, ip)
        previous = self.entries.pop(ip, None)
        if previous is not None and self.devices.get(previous.ifindex) == ip:
            del self.devices[previous.ifindex]
        return previous is not None

    def get(self, ip: str) -> EndpointRecord | None:
        return self.entries.get(ip)

    def items(self) -> list[tuple[str, EndpointRecord]]:
        return sorted(self.entries.items(), key=lambda kv: ipaddress.IPv4Address(kv[0]))

    def keys(self) -> list[str]:
        return [ip for ip, _ in self.items()]

    def prune_devices(self) -> list[int]:
        stale = [i for i, ip in self.devices.items() if ip not in self.entries or self.entries[ip].ifindex != i]
        for ifindex in stale:
            del self.devices[ifindex]
        return stale


class MemHostEndpointMap:
    """mb_host_ep: the one host endpoint entry (an array map, so it always holds a state)."""

    NAME = "mb_host_ep"

    def __init__(self, faults: Faults) -> None:
        self.state = HostEndpointState()
        self._faults = faults

    def read(self) -> HostEndpointState:
        return self.state

    def write(self, state: HostEndpointState) -> None:
        self._faults.check(self.NAME, 0)
        self.state = state


class MemHashMap:
    """A BPF hash map of fixed key/value structs, keyed by the key's bytes (the kernel's view)."""

    def __init__(self, name: str, key: type[ctypes.Structure], value: type[ctypes.Structure], faults: Faults) -> None:
        self.NAME, self.KEY, self.VALUE = name, key, value
        self._data: dict[bytes, bytes] = {}
        self._faults = faults

    def get(self, key: ctypes.Structure) -> ctypes.Structure | None:
        raw = self._data.get(bytes(key))
        return None if raw is None else self.VALUE.from_buffer_copy(raw)

    def put(self, key: ctypes.Structure, value: ctypes.Structure) -> None:
        self._faults.check(self.NAME, bytes(key))
        self._data[bytes(key)] = bytes(value)

    def delete(self, key: ctypes.Structure) -> bool:
        return self._data.pop(bytes(key), None) is not None

    def items(self) -> list[tuple[ctypes.Structure, ctypes.Structure]]:
        return [(self.KEY.from_buffer_copy(k), self.VALUE.from_buffer_copy(v)) for k, v in self._data.items()]

    def close(self) -> None:
        pass


def mem_lb_maps(faults: Faults) -> lbm.LBMaps:
    """The real LBMaps over in-memory hash maps."""
    kinds = (lbm.ServiceMap, lbm.BackendMap, lbm.RevnatMap, lbm.MaglevMap, lbm.AffinityMap)
    return lbm.LBMaps(*(MemHashMap(k.NAME, k.KEY, k.VALUE, faults) for k in kinds))  # type: ignore[arg-type]


class FakeDatapath:
    """What the agent's reconcilers and controllers use of ``NodeDatapath``, in memory."""

    def __init__(self) -> None:
        self.faults = Faults()
        self.ipcache = MemIpcacheMap(self.faults)
        self.endpoints = MemEndpointsMap(self.faults)
        self.policy = MemPolicyMap(self.faults)
        self.lb = mem_lb_maps(self.faults)
        self.host_endpoint = MemHostEndpointMap(self.faults)

    def close(self) -> None:
        pass
