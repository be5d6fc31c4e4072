"""Reconciler ops for the endpoints map: rows ``pod IPv4 -> EndpointRecord`` into mb_endpoints.

The target (``EndpointsMap`` or the fake datapath's in-memory one) keeps mb_lxc, the device
binding of each entry, in step on every write, so one row is one endpoint in both maps. ``prune``
makes the map exact (entries no row asks for go, drifted entries are written again) and then
unbinds devices left without their entry. See membrane.datapath.maps.ops for the other maps' ops.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from membrane.datapath.maps.endpoints import EndpointRecord
from membrane.datapath.maps.ops import DatapathUnavailable


class EndpointsTarget(Protocol):
    def update(self, ip: str, record: EndpointRecord) -> None: ...
    def delete(self, ip: str) -> bool: ...
    def items(self) -> list[tuple[str, EndpointRecord]]: ...
    def prune_devices(self) -> list[int]: ...


class EndpointsOps:
    """Rows ``ip -> EndpointRecord`` into mb_endpoints (and its device bindings in mb_lxc)."""

    def __init__(self, target: Callable[[], EndpointsTarget | None],
                 desired: Callable[[], Mapping[str, EndpointRecord]] = dict) -> None:
        self._target = target
        self._desired = desired

    def _map(self) -> EndpointsTarget:
        target = self._target()
        if target is None:
            raise DatapathUnavailable("mb_endpoints: the node datapath is not loaded")
        return target

    def update(self, ip: str, record: EndpointRecord) -> None:
        self._map().update(ip, record)

    def delete(self, ip: str) -> None:
        self._map().delete(ip)

    def prune(self, keys: set[str]) -> None:
        target = self._map()
        want = self._desired()
        for ip, record in target.items():
            if ip not in keys:
                target.delete(ip)
            elif ip in want and want[ip] != record:
                target.update(ip, want[ip])
        target.prune_devices()
