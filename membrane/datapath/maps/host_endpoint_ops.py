"""Reconciler ops for mb_host_ep, the host firewall's switch: one row ``0 -> HostEndpointState``.

The map is an array of one entry, so ``delete`` writes the cleared state (host firewall off) and
``prune`` repairs drift by reading the entry back and writing the row again when they differ. Before
the agent has decided (no row yet) prune leaves the entry alone: a restarting agent keeps the
previous enforcement until its policy controller has resolved the host endpoint again. The map is
reached through a callable, as in membrane.datapath.maps.ops, so a missing datapath leaves the row
pending.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from membrane.datapath.maps.host_endpoint import HostEndpointState
from membrane.datapath.maps.ops import DatapathUnavailable

HOST_EP_ROW = 0  # the one key of the desired table (and of the array map)


class HostEndpointTarget(Protocol):
    def read(self) -> HostEndpointState: ...
    def write(self, state: HostEndpointState) -> None: ...


class HostEndpointOps:
    def __init__(self, target: Callable[[], HostEndpointTarget | None],
                 desired: Callable[[], Mapping[int, HostEndpointState]]) -> None:
        self._target = target
        self._desired = desired

    def _map(self) -> HostEndpointTarget:
        target = self._target()
        if target is None:
            raise DatapathUnavailable("mb_host_ep: the node datapath is not loaded")
        return target

    def update(self, _key: int, state: HostEndpointState) -> None:
        self._map().write(state)

    def delete(self, _key: int) -> None:
        self._map().write(HostEndpointState())

    def prune(self, keys: set[int]) -> None:
        want = self._desired().get(HOST_EP_ROW)
        if HOST_EP_ROW not in keys or want is None:
            return
        target = self._map()
        if target.read() != want:
            target.write(want)
