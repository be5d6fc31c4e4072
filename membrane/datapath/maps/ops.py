"""Per-map operations for membrane.state.reconciler: how one desired row reaches one BPF map.

Each ops object is the target side of a reconciler: ``update(key, row)`` and ``delete(key)`` write
one row (raising on failure, so the reconciler records the error and retries that row alone), and
``prune(keys)`` reads the whole map back and makes it exact: entries no row asks for go, entries
whose value drifted are written again. The map is reached through a callable, so the same ops run
against the node's pinned maps or the in-memory ones of membrane.datapath.fake.

The three ops share this module rather than each joining its map's module (ARCHITECTURE.md's "mirrors
+ reconciler ops"): lb.py is at the size limit, and the ops read best side by side. Desired rows are
immutable: ``IpcacheEntry`` by prefix, ``Verdict`` by ``PolicySlot``, and
:class:`ServiceEntry` (a frontend with its backends, as one unit of mb_lb_*) by ``Frontend``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from membrane.datapath.maps.ipcache import IpcacheEntry
from membrane.datapath.maps.lb import Backend, Frontend
from membrane.datapath.maps.policy import PolicySlot, SlotState, Verdict


class DatapathUnavailable(RuntimeError):
    """The node's maps are not open (yet): the row stays pending and is retried."""


class IpcacheTarget(Protocol):
    def update(self, prefix: str, entry: IpcacheEntry) -> None: ...
    def delete(self, prefix: str) -> bool: ...
    def items(self) -> list[tuple[str, IpcacheEntry]]: ...


class PolicyTarget(Protocol):
    def write_slot(self, slot: PolicySlot, verdict: Verdict) -> None: ...
    def delete_slot(self, slot: PolicySlot) -> bool: ...
    def items(self) -> dict[PolicySlot, SlotState]: ...


def _need(target: Any, what: str) -> Any:
    if target is None:
        raise DatapathUnavailable(f"{what}: the node datapath is not loaded")
    return target


class IpcacheOps:
    """Rows ``prefix -> IpcacheEntry`` into mb_ipcache."""

    def __init__(self, target: Callable[[], IpcacheTarget | None],
                 desired: Callable[[], Mapping[str, IpcacheEntry]] = dict) -> None:
        self._target = target
        self._desired = desired

    def _map(self) -> IpcacheTarget:
        return _need(self._target(), "mb_ipcache")

    def update(self, prefix: str, entry: IpcacheEntry) -> None:
        self._map().update(prefix, entry)

    def delete(self, prefix: str) -> None:
        self._map().delete(prefix)

    def prune(self, keys: set[str]) -> None:
        target = self._map()
        want = self._desired()
        for prefix, entry in target.items():
            if prefix not in keys:
                target.delete(prefix)
            elif prefix in want and want[prefix] != entry:
                target.update(prefix, want[prefix])


class PolicyOps:
    """Rows ``PolicySlot -> Verdict`` into mb_policy (every local endpoint's slots)."""

    def __init__(self, target: Callable[[], PolicyTarget | None],
                 desired: Callable[[], Mapping[PolicySlot, Verdict]] = dict) -> None:
        self._target = target
        self._desired = desired

    def _map(self) -> PolicyTarget:
        return _need(self._target(), "mb_policy")

    def update(self, slot: PolicySlot, verdict: Verdict) -> None:
        self._map().write_slot(slot, verdict)

    def delete(self, slot: PolicySlot) -> None:
        self._map().delete_slot(slot)

    def prune(self, keys: set[PolicySlot]) -> None:
        target = self._map()
        want = self._desired()
        for slot, state in target.items().items():
            if slot not in keys:
                target.delete_slot(slot)
            elif slot in want and want[slot] != state.verdict:
                target.write_slot(slot, want[slot])


@dataclass(frozen=True)
class ServiceEntry:
    """One frontend as the LB maps hold it: its backends (terminating ones included), rev-NAT id,
    algorithm and, for maglev, the lookup table (backend id per slot)."""

    frontend: Frontend
    backends: tuple[Backend, ...]
    rev_nat_index: int
    algorithm: str = "random"
    affinity_timeout: int = 0
    maglev_table: tuple[int, ...] = ()
    flags: int = 0

    @property
    def backend_ids(self) -> set[int]:
        return {b.id for b in self.backends}


class LBTarget(Protocol):
    def upsert_service(self, frontend: Frontend, backends: Any, rev_nat_index: int, algorithm: str = ...,
                       affinity_timeout: int = ..., maglev_table: Any = ..., flags: int = ...) -> None: ...
    def delete_service(self, frontend: Frontend) -> bool: ...
    def prune_backends(self, candidates: set[int]) -> list[int]: ...
    def gc_backends(self, keep: set[int]) -> list[int]: ...
    def frontends(self) -> list[Frontend]: ...


class LBOps:
    """Rows ``Frontend -> ServiceEntry`` into mb_lb_svc/_be/_revnat/_maglev. A backend leaves mb_lb_be
    once no desired row lists it and no slot refers to it (terminating backends have no slot)."""

    def __init__(self, target: Callable[[], LBTarget | None],
                 desired: Callable[[], Mapping[Frontend, ServiceEntry]] = dict,
                 backend_in_use: Callable[[int], bool] | None = None) -> None:
        self._target = target
        self._desired = desired
        self._in_use = backend_in_use
        self._applied: dict[Frontend, set[int]] = {}  # backend ids each frontend was last written with

    def _lb(self) -> LBTarget:
        return _need(self._target(), "mb_lb_*")

    def update(self, frontend: Frontend, entry: ServiceEntry) -> None:
        lb = self._lb()
        lb.upsert_service(frontend, entry.backends, rev_nat_index=entry.rev_nat_index, algorithm=entry.algorithm,
                          affinity_timeout=entry.affinity_timeout, maglev_table=entry.maglev_table or None,
                          flags=entry.flags)
        gone = self._applied.get(frontend, set()) - entry.backend_ids
        self._applied[frontend] = entry.backend_ids
        self._release(lb, gone)

    def delete(self, frontend: Frontend) -> None:
        lb = self._lb()
        lb.delete_service(frontend)
        self._release(lb, self._applied.pop(frontend, set()))

    def _release(self, lb: LBTarget, candidates: Iterable[int]) -> None:
        unused = {b for b in candidates if not self._used(b)}
        if unused:
            lb.prune_backends(unused)

    def _used(self, backend_id: int) -> bool:
        if self._in_use is not None:
            return self._in_use(backend_id)
        return any(backend_id in e.backend_ids for e in self._desired().values())

    def prune(self, keys: set[Frontend]) -> None:
        lb = self._lb()
        for frontend in lb.frontends():
            if frontend not in keys:
                lb.delete_service(frontend)
                self._applied.pop(frontend, None)
        lb.gc_backends({b for e in self._desired().values() for b in e.backend_ids})
