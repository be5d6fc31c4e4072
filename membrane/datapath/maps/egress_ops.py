"""Reconciler ops for mb_egress_v4: rows ``(source IP, destination CIDR) -> (gateway IP, egress IP)``
(membrane.egressgw.rows, as text). ``prune`` makes the map exact: keys no row asks for go, a key
whose value drifted is written again. The map is reached through a callable, as in
membrane.datapath.maps.ops, so a missing datapath leaves rows pending.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from membrane.datapath.maps.ops import DatapathUnavailable

Key = tuple[str, str]  # (source IP, destination CIDR)
Target = tuple[str, str]  # (gateway IP, egress IP)


class EgressTarget(Protocol):
    def update(self, source_ip: str, destination: str, gateway_ip: str, egress_ip: str) -> None: ...
    def delete(self, source_ip: str, destination: str) -> bool: ...
    def entries(self) -> dict[Key, Target]: ...


class EgressOps:
    def __init__(self, target: Callable[[], EgressTarget | None],
                 desired: Callable[[], Mapping[Key, Target]] = dict) -> None:
        self._target = target
        self._desired = desired

    def _map(self) -> EgressTarget:
        target = self._target()
        if target is None:
            raise DatapathUnavailable("mb_egress_v4: the node datapath is not loaded")
        return target

    def update(self, key: Key, value: Target) -> None:
        self._map().update(*key, *value)

    def delete(self, key: Key) -> None:
        self._map().delete(*key)

    def prune(self, keys: set[Key]) -> None:
        target = self._map()
        want = self._desired()
        for key, value in target.entries().items():
            if key not in keys:
                target.delete(*key)
            elif key in want and want[key] != value:
                target.update(*key, *want[key])
