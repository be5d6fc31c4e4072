"""mb_lb_*: service frontends, backends, reverse NAT, maglev tables and ClientIP affinity
(bpf/lib/maps.h struct lb_*; the datapath side is bpf/lib/lb.h).

A frontend has one mb_lb_svc entry per slot: slot 0 is the service (backend count, flags,
rev_nat_index; the maglev table size for maglev services), slots 1..count its active backends.
Updates keep a running lookup consistent: backends and slots are written before slot 0 raises
the count, and slots beyond a lower count are removed only after slot 0 says so.
"""

from __future__ import annotations

import ctypes
import ipaddress
import struct
from collections.abc import Sequence
from ctypes import c_uint8, c_uint16, c_uint32
from dataclasses import dataclass

from membrane.datapath.bpf.syscalls import map_delete, map_keys, map_lookup, map_update
from membrane.datapath.maps.pinned import BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LRU_HASH, PinnedMap
from membrane.model.errors import ValidationError

SVC_MAP = "mb_lb_svc"
BACKEND_MAP = "mb_lb_be"
REVNAT_MAP = "mb_lb_revnat"
MAGLEV_MAP = "mb_lb_maglev"
AFFINITY_MAP = "mb_lb_affinity"

SCOPE_EXT = 0  # the frontend for every client
SCOPE_INT = 1  # in-cluster clients of a two-scope service (internalTrafficPolicy=Local)

# LB flags of slot 0 (LB_F_* in bpf/lib/maps.h)
LB_F_AFFINITY = 1 << 0
LB_F_MAGLEV = 1 << 1
LB_F_ETP_LOCAL = 1 << 2
LB_F_ITP_LOCAL = 1 << 3
LB_F_TWO_SCOPES = 1 << 4
LB_BE_F_TERMINATING = 1 << 0

ALGORITHMS = ("random", "maglev")
PROTOCOLS = {"TCP": 6, "UDP": 17}
PROTOCOL_NAMES = {number: name for name, number in PROTOCOLS.items()}
_WHAT = "load-balancer entry"


class LbSvcKey(ctypes.Structure):
    """struct lb_svc_key (address and port in network byte order)."""

    _fields_ = [("address", c_uint32), ("dport", c_uint16), ("proto", c_uint8), ("scope", c_uint8),
                ("backend_slot", c_uint16), ("pad", c_uint16)]


class LbSvcValue(ctypes.Structure):
    """struct lb_svc_value."""

    _fields_ = [("backend_id", c_uint32), ("count", c_uint16), ("rev_nat_index", c_uint16), ("flags", c_uint16),
                ("pad", c_uint16), ("affinity_timeout", c_uint32)]


class LbBackendKey(ctypes.Structure):
    """struct lb_backend_key."""

    _fields_ = [("backend_id", c_uint32)]


class LbBackend(ctypes.Structure):
    """struct lb_backend."""

    _fields_ = [("address", c_uint32), ("port", c_uint16), ("proto", c_uint8), ("flags", c_uint8)]


class LbRevnatKey(ctypes.Structure):
    """struct lb_revnat_key."""

    _fields_ = [("rev_nat_index", c_uint16), ("pad", c_uint16)]


class LbRevnat(ctypes.Structure):
    """struct lb_revnat."""

    _fields_ = [("address", c_uint32), ("port", c_uint16), ("pad", c_uint16)]


class LbMaglevKey(ctypes.Structure):
    """struct lb_maglev_key."""

    _fields_ = [("rev_nat_index", c_uint16), ("pad", c_uint16), ("slot", c_uint32)]


class LbMaglevValue(ctypes.Structure):
    """struct lb_maglev_value."""

    _fields_ = [("backend_id", c_uint32)]


class LbAffinityKey(ctypes.Structure):
    """struct lb_affinity_key."""

    _fields_ = [("client_ip", c_uint32), ("rev_nat_index", c_uint16), ("pad", c_uint16)]


class LbAffinity(ctypes.Structure):
    """struct lb_affinity."""

    _fields_ = [("backend_id", c_uint32), ("last_used", c_uint32)]


LB_MIRRORS: tuple[tuple[str, type[ctypes.Structure]], ...] = (
    ("lb_svc_key", LbSvcKey), ("lb_svc_value", LbSvcValue), ("lb_backend_key", LbBackendKey),
    ("lb_backend", LbBackend), ("lb_revnat_key", LbRevnatKey), ("lb_revnat", LbRevnat),
    ("lb_maglev_key", LbMaglevKey), ("lb_maglev_value", LbMaglevValue), ("lb_affinity_key", LbAffinityKey),
    ("lb_affinity", LbAffinity),
)


def _net_addr(address: str) -> int:
    try:
        return struct.unpack("=I", ipaddress.IPv4Address(address).packed)[0]
    except (ValueError, TypeError):
        raise ValidationError(f"{address!r} is not an IPv4 address", _WHAT) from None


def _addr_text(value: int) -> str:
    return str(ipaddress.IPv4Address(struct.pack("=I", value)))


def _net_port(port: int) -> int:
    return struct.unpack("=H", struct.pack("!H", port))[0]


def _host_port(value: int) -> int:
    return struct.unpack("!H", struct.pack("=H", value))[0]


def _uint(value: int, bits: int, field: str, low: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value < (1 << bits):
        raise ValidationError(f"{field} {value!r}: must be an integer in {low}..{(1 << bits) - 1}", _WHAT)
    return value


def _proto(proto: str | int) -> int:
    number = PROTOCOLS.get(proto.upper()) if isinstance(proto, str) else proto
    if number not in PROTOCOL_NAMES:
        raise ValidationError(f"protocol {proto!r}: the datapath balances TCP and UDP only", _WHAT)
    return number


@dataclass(frozen=True)
class Frontend:
    """A service address the datapath translates: ClusterIP, ExternalIP or node IP + NodePort."""

    address: str
    port: int
    proto: str = "TCP"
    scope: int = SCOPE_EXT

    def __post_init__(self) -> None:
        _net_addr(self.address)
        _uint(self.port, 16, "port", low=1)
        object.__setattr__(self, "proto", PROTOCOL_NAMES[_proto(self.proto)])
        if self.scope not in (SCOPE_EXT, SCOPE_INT):
            raise ValidationError(f"scope {self.scope!r}: must be {SCOPE_EXT} or {SCOPE_INT}", _WHAT)

    def key(self, slot: int = 0) -> LbSvcKey:
        return LbSvcKey(address=_net_addr(self.address), dport=_net_port(self.port), proto=PROTOCOLS[self.proto],
                        scope=self.scope, backend_slot=slot)

    def describe(self) -> str:
        return f"{self.address}:{self.port}/{self.proto}" + ("/i" if self.scope == SCOPE_INT else "")


@dataclass(frozen=True)
class Backend:
    """A backend by its cluster-wide id; terminating ones serve existing connections only."""

    id: int
    address: str
    port: int
    proto: str = "TCP"
    terminating: bool = False

    def __post_init__(self) -> None:
        _uint(self.id, 32, "backend id", low=1)
        _net_addr(self.address)
        _uint(self.port, 16, "backend port", low=1)
        object.__setattr__(self, "proto", PROTOCOL_NAMES[_proto(self.proto)])

    def to_c(self) -> LbBackend:
        return LbBackend(address=_net_addr(self.address), port=_net_port(self.port), proto=PROTOCOLS[self.proto],
                         flags=LB_BE_F_TERMINATING if self.terminating else 0)

    @classmethod
    def from_c(cls, backend_id: int, value: LbBackend) -> Backend:
        return cls(backend_id, _addr_text(value.address), _host_port(value.port),
                   PROTOCOL_NAMES.get(value.proto, "TCP"), bool(value.flags & LB_BE_F_TERMINATING))

    def describe(self) -> str:
        return f"{self.address}:{self.port}/{self.proto}"


@dataclass(frozen=True)
class ServiceRow:
    """A ``cilium-dbg bpf lb list`` line: SERVICE ADDRESS, BACKEND ADDRESS (REVNAT_ID) (SLOT)."""

    service: str
    backend: str
    rev_nat_index: int
    slot: int

    def describe(self) -> str:
        return f"{self.service:<24} {self.backend} ({self.rev_nat_index}) ({self.slot})"


class _Map(PinnedMap):
    """A plain hash map of the load balancer (typed by the subclasses)."""

    MAP_TYPE = BPF_MAP_TYPE_HASH

    def get(self, key: ctypes.Structure) -> ctypes.Structure | None:
        value = self.VALUE()
        return value if map_lookup(self.fd, key, value, what=self.NAME) else None

    def put(self, key: ctypes.Structure, value: ctypes.Structure) -> None:
        map_update(self.fd, key, value, what=self.NAME)

    def delete(self, key: ctypes.Structure) -> bool:
        return map_delete(self.fd, key, what=self.NAME)

    def items(self) -> list[tuple[ctypes.Structure, ctypes.Structure]]:
        found = {}
        for key in map_keys(self.fd, self.KEY, what=self.NAME):
            value = self.get(key)
            if value is not None:
                found[bytes(key)] = (key, value)
        return list(found.values())


class ServiceMap(_Map):
    NAME, KEY, VALUE = SVC_MAP, LbSvcKey, LbSvcValue


class BackendMap(_Map):
    NAME, KEY, VALUE = BACKEND_MAP, LbBackendKey, LbBackend


class RevnatMap(_Map):
    NAME, KEY, VALUE = REVNAT_MAP, LbRevnatKey, LbRevnat


class MaglevMap(_Map):
    NAME, KEY, VALUE = MAGLEV_MAP, LbMaglevKey, LbMaglevValue


class AffinityMap(_Map):
    NAME, KEY, VALUE = AFFINITY_MAP, LbAffinityKey, LbAffinity
    MAP_TYPE = BPF_MAP_TYPE_LRU_HASH


class LBMaps:
    """``LBMaps.open(pin_dir)``: the node's service maps, written as whole services."""

    def __init__(self, svc: ServiceMap, be: BackendMap, revnat: RevnatMap, maglev: MaglevMap,
                 affinity: AffinityMap) -> None:
        self.svc, self.be, self.rev, self.maglev, self.affinity = svc, be, revnat, maglev, affinity

    @classmethod
    def open(cls, pin_dir: str) -> LBMaps:
        opened: list[PinnedMap] = []
        try:
            for kind in (ServiceMap, BackendMap, RevnatMap, MaglevMap, AffinityMap):
                opened.append(kind.open(pin_dir))
        except BaseException:
            for handle in opened:
                handle.close()
            raise
        return cls(*opened)  # type: ignore[arg-type]

    def close(self) -> None:
        for handle in (self.svc, self.be, self.rev, self.maglev, self.affinity):
            handle.close()

    def __enter__(self) -> LBMaps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------

    def upsert_service(self, frontend: Frontend, backends: Sequence[Backend], rev_nat_index: int,
                       algorithm: str = "random", affinity_timeout: int = 0,
                       maglev_table: Sequence[int] | None = None, flags: int = 0) -> None:
        """Create or replace a frontend. Active backends get slots; terminating ones stay in
        mb_lb_be for their connections. ``affinity_timeout`` > 0 turns on ClientIP affinity;
        ``algorithm="maglev"`` needs ``maglev_table`` (backend id per slot, length M, from the
        control plane). ``flags`` adds LB_F_ETP_LOCAL / LB_F_ITP_LOCAL / LB_F_TWO_SCOPES."""
        _uint(rev_nat_index, 16, "rev_nat_index", low=1)
        _uint(affinity_timeout, 32, "affinity timeout")
        _uint(flags, 16, "flags")
        if algorithm not in ALGORITHMS:
            raise ValidationError(f"algorithm {algorithm!r}: expected one of {', '.join(ALGORITHMS)}", _WHAT)
        ids = [b.id for b in backends]
        if len(set(ids)) != len(ids):
            raise ValidationError(f"{frontend.describe()}: duplicate backend ids {ids}", _WHAT)
        active = [b for b in backends if not b.terminating]
        if len(active) > 0xFFFF:
            raise ValidationError(f"{frontend.describe()}: too many backends ({len(active)})", _WHAT)
        table = list(maglev_table or [])
        if algorithm == "maglev":
            if active and not table:
                raise ValidationError(f"{frontend.describe()}: maglev needs a maglev_table", _WHAT)
            unknown = set(table) - {b.id for b in active}
            if unknown:
                raise ValidationError(f"maglev table names backends {sorted(unknown)} that are not active", _WHAT)
        flags |= (LB_F_AFFINITY if affinity_timeout else 0) | (LB_F_MAGLEV if algorithm == "maglev" else 0)

        old = self.svc.get(frontend.key(0))
        old_count = old.count if old is not None else 0
        old_ids = self._slot_ids(frontend, old_count)
        old_m = old.backend_id if old is not None and old.flags & LB_F_MAGLEV else 0
        for backend in backends:
            self.be.put(LbBackendKey(backend.id), backend.to_c())
        self.rev.put(LbRevnatKey(rev_nat_index=rev_nat_index),
                     LbRevnat(address=_net_addr(frontend.address), port=_net_port(frontend.port)))
        for slot, backend_id in enumerate(table):
            self.maglev.put(LbMaglevKey(rev_nat_index=rev_nat_index, slot=slot), LbMaglevValue(backend_id))
        for slot, backend in enumerate(active, start=1):
            self.svc.put(frontend.key(slot), LbSvcValue(backend_id=backend.id, rev_nat_index=rev_nat_index))
        self.svc.put(frontend.key(0), LbSvcValue(backend_id=len(table) if algorithm == "maglev" else 0,
                                                 count=len(active), rev_nat_index=rev_nat_index, flags=flags,
                                                 affinity_timeout=affinity_timeout))
        for slot in range(len(active) + 1, old_count + 1):
            self.svc.delete(frontend.key(slot))
        for slot in range(len(table), old_m):
            self.maglev.delete(LbMaglevKey(rev_nat_index=rev_nat_index, slot=slot))
        self._prune_backends(set(old_ids) - set(ids))

    def delete_service(self, frontend: Frontend) -> bool:
        """Remove a frontend (slot 0 first, so lookups stop), its reverse NAT and maglev entries
        when no other frontend uses them, and backends no service refers to any more."""
        old = self.svc.get(frontend.key(0))
        if old is None:
            return False
        self.svc.delete(frontend.key(0))
        old_ids = self._slot_ids(frontend, old.count)
        for slot in range(1, old.count + 1):
            self.svc.delete(frontend.key(slot))
        if not any(v.rev_nat_index == old.rev_nat_index for k, v in self.svc.items() if k.backend_slot == 0):
            self.rev.delete(LbRevnatKey(rev_nat_index=old.rev_nat_index))
            for key, _value in self.maglev.items():
                if key.rev_nat_index == old.rev_nat_index:
                    self.maglev.delete(key)
        self._prune_backends(set(old_ids))
        return True

    def _slot_ids(self, frontend: Frontend, count: int) -> list[int]:
        values = (self.svc.get(frontend.key(slot)) for slot in range(1, count + 1))
        return [v.backend_id for v in values if v is not None]

    def prune_backends(self, candidates: set[int]) -> list[int]:
        """Remove those of ``candidates`` that no slot refers to; returns their ids."""
        used = {v.backend_id for k, v in self.svc.items() if k.backend_slot != 0} if candidates else set()
        removed = sorted(candidates - used)
        for backend_id in removed:
            self.be.delete(LbBackendKey(backend_id))
        return removed

    def frontends(self) -> list[Frontend]:
        """Every frontend the service map holds (its slot 0)."""
        return [Frontend(_addr_text(k.address), _host_port(k.dport), PROTOCOL_NAMES.get(k.proto, "TCP"), k.scope)
                for k, _v in self.svc.items() if k.backend_slot == 0 and k.proto in PROTOCOL_NAMES]

    def _prune_backends(self, candidates: set[int]) -> None:
        if not candidates:
            return
        used = {v.backend_id for k, v in self.svc.items() if k.backend_slot != 0}
        for backend_id in candidates - used:
            self.be.delete(LbBackendKey(backend_id))

    def gc_backends(self, keep: set[int]) -> list[int]:
        """Remove backends that no slot refers to and that are not in ``keep`` (e.g. terminating
        backends the control plane no longer lists); returns their ids. An upsert prunes only the
        backends that left the service's own slots, since terminating ones have no slot."""
        used = {v.backend_id for k, v in self.svc.items() if k.backend_slot != 0} | keep
        removed = sorted(set(self.backends()) - used)
        for backend_id in removed:
            self.be.delete(LbBackendKey(backend_id))
        return removed

    def delete_backend(self, backend_id: int) -> bool:
        """Forget a backend (its connections are then moved to another one on their next packet)."""
        return self.be.delete(LbBackendKey(_uint(backend_id, 32, "backend id", low=1)))

    # -- reading ---------------------------------------------------------------------------

    def backends(self) -> dict[int, Backend]:
        return {k.backend_id: Backend.from_c(k.backend_id, v) for k, v in self.be.items()}

    def services(self) -> list[ServiceRow]:
        """Every slot of every frontend, like ``cilium-dbg bpf lb list``."""
        backends = self.backends()
        rows = []
        for key, value in self.svc.items():
            proto = PROTOCOL_NAMES.get(key.proto, str(key.proto))
            service = Frontend(_addr_text(key.address), _host_port(key.dport), proto, key.scope).describe()
            if key.backend_slot == 0:
                backend = "0.0.0.0:0"
            else:
                found = backends.get(value.backend_id)
                backend = found.describe() if found else f"backend {value.backend_id} (missing)"
            rows.append(ServiceRow(service, backend, value.rev_nat_index, key.backend_slot))
        return sorted(rows, key=lambda r: (ipaddress.IPv4Address(r.service.split(":")[0]), r.service, r.slot))

    def revnat(self) -> list[tuple[int, str]]:
        """``cilium-dbg bpf lb list --revnat`` rows: (rev_nat_index, frontend address:port)."""
        rows = [(k.rev_nat_index, f"{_addr_text(v.address)}:{_host_port(v.port)}") for k, v in self.rev.items()]
        return sorted(rows)

    def maglev_table(self, rev_nat_index: int) -> list[int]:
        """The backend id of every maglev slot of a service (empty when it has none)."""
        slots = {k.slot: v.backend_id for k, v in self.maglev.items() if k.rev_nat_index == rev_nat_index}
        return [slots[i] for i in sorted(slots)]
