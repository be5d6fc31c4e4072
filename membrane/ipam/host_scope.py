"""Host-scope IPAM: pod addresses out of one node's pod CIDR (cluster-pool and kubernetes modes alike).

The usable range excludes the network and broadcast addresses (a /24 gives 254). The agent takes the first
usable address for its router (``cilium_host``) and allocates the health endpoint and every pod from the rest.
``allocate`` continues after the address it handed out last (wrapping around), like host-local, so a
released address is not reused at once while stale state about it may still be around. The allocator is
a plain value: not thread-safe (the caller serialises), no I/O; ``snapshot``/``restore`` persist it.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from membrane.ipam.cidr import parse_address, parse_network
from membrane.ipam.errors import AddressUnavailable, RangeFull
from membrane.model.errors import ValidationError

ROUTER_OWNER = "router"
HEALTH_OWNER = "health"
SNAPSHOT_VERSION = 1


class HostScopeAllocator:
    """Pod IPs of one node: ip -> owner (``router``, ``health``, ``<namespace>/<pod>``, a container id …)."""

    def __init__(self, cidr: str) -> None:
        net = parse_network(cidr, "pod CIDR")
        if net.prefixlen > 30:
            raise ValidationError(f"{net} leaves no usable pod addresses (need /30 or wider)", "pod CIDR")
        self._net = net
        self._first = int(net.network_address) + 1
        self._last = int(net.broadcast_address) - 1
        self._used: dict[int, str] = {}
        self._cursor: int | None = None  # the address allocate() handed out last

    # --- the range -------------------------------------------------------------------------------------
    @property
    def cidr(self) -> str:
        return str(self._net)

    @property
    def first(self) -> str:
        """First usable address (network address + 1)."""
        return _text(self._first)

    @property
    def last(self) -> str:
        """Last usable address (broadcast address - 1)."""
        return _text(self._last)

    @property
    def capacity(self) -> int:
        """Number of usable addresses (254 for a /24)."""
        return self._last - self._first + 1

    @property
    def available(self) -> int:
        return self.capacity - len(self._used)

    # --- allocation ------------------------------------------------------------------------------------
    def reserve_router(self) -> str:
        """The router address: the first usable one, owner ``router``; returns the router's address if it has one."""
        held = self.ips_of(ROUTER_OWNER)
        if held:
            return held[0]
        holder = self._used.get(self._first)
        if holder is not None:
            raise AddressUnavailable(
                f"router address {self.first} (first usable address of {self.cidr}) is already allocated to {holder!r}"
            )
        self._used[self._first] = ROUTER_OWNER
        return self.first

    def allocate(self, owner: str) -> str:
        """The next free address after the one allocated last (wrapping); raises RangeFull when none is free."""
        _check_owner(owner)
        if len(self._used) >= self.capacity:
            raise RangeFull(self.first, self.last)
        start = self._first if self._cursor is None else self._cursor + 1
        size = self.capacity
        for step in range(size):
            candidate = self._first + (start - self._first + step) % size
            if candidate not in self._used:
                self._used[candidate] = owner
                self._cursor = candidate
                return _text(candidate)
        raise RangeFull(self.first, self.last)  # unreachable: the count above says one is free

    def allocate_specific(self, ip: str, owner: str) -> str:
        """Take ``ip`` for ``owner``. Idempotent for the same owner; AddressUnavailable if out of range or taken."""
        _check_owner(owner)
        value = self._in_range(ip, "allocate_specific")
        holder = self._used.get(value)
        if holder == owner:
            return _text(value)
        if holder is not None:
            raise AddressUnavailable(f"{_text(value)} is already allocated to {holder!r}")
        self._used[value] = owner
        return _text(value)

    def release(self, ip: str) -> str | None:
        """Free ``ip``; returns its former owner, or None if it was free (releasing twice is harmless)."""
        addr = parse_address(ip, "release")
        if addr not in self._net:
            raise ValidationError(f"{addr} is not in pod CIDR {self.cidr}", "release")
        return self._used.pop(int(addr), None)

    def release_owner(self, owner: str) -> list[str]:
        """Free every address of ``owner``; returns them in address order (empty if it held none)."""
        freed = sorted(value for value, holder in self._used.items() if holder == owner)
        for value in freed:
            del self._used[value]
        return [_text(value) for value in freed]

    # --- queries ---------------------------------------------------------------------------------------
    def owner_of(self, ip: str) -> str | None:
        addr = parse_address(ip, "owner_of")
        return self._used.get(int(addr))

    def ips_of(self, owner: str) -> list[str]:
        return [_text(value) for value in sorted(self._used) if self._used[value] == owner]

    def used(self) -> dict[str, str]:
        """ip -> owner, in address order."""
        return {_text(value): self._used[value] for value in sorted(self._used)}

    def status_line(self) -> str:
        """``IPv4: 5/254 allocated from 10.0.1.0/24`` (cilium-dbg status wording)."""
        return f"IPv4: {len(self._used)}/{self.capacity} allocated from {self.cidr}"

    # --- persistence -----------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready description that ``restore`` turns back into an equal allocator."""
        return {
            "version": SNAPSHOT_VERSION,
            "cidr": self.cidr,
            "last_allocated": None if self._cursor is None else _text(self._cursor),
            "used": self.used(),
        }

    @classmethod
    def restore(cls, snapshot: dict[str, Any]) -> HostScopeAllocator:
        """Rebuild from ``snapshot()``; ValidationError naming the bad field if the snapshot is damaged."""
        where = "ipam snapshot"
        if not isinstance(snapshot, dict):
            raise ValidationError(f"expected a mapping, got {type(snapshot).__name__}", where)
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValidationError(
                f"version {snapshot.get('version')!r} not supported (expected {SNAPSHOT_VERSION})", f"{where}: version"
            )
        try:
            allocator = cls(snapshot.get("cidr"))  # type: ignore[arg-type]
        except ValidationError as exc:
            raise exc.within(f"{where}: cidr") from None
        used = snapshot.get("used", {})
        if not isinstance(used, dict):
            raise ValidationError(f"expected a mapping of ip to owner, got {type(used).__name__}", f"{where}: used")
        for ip, owner in used.items():
            field = f"{where}: used[{ip!r}]"
            try:
                _check_owner(owner)
                value = allocator._in_range(ip, field)
            except AddressUnavailable as exc:
                raise ValidationError(str(exc), field) from None
            except ValidationError as exc:
                raise ValidationError(exc.reason, field) from None
            allocator._used[value] = owner
        cursor = snapshot.get("last_allocated")
        if cursor is not None:
            try:
                allocator._cursor = allocator._in_range(cursor, f"{where}: last_allocated")
            except AddressUnavailable as exc:
                raise ValidationError(str(exc), f"{where}: last_allocated") from None
        return allocator

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HostScopeAllocator):
            return NotImplemented
        return (self._net, self._used, self._cursor) == (other._net, other._used, other._cursor)

    def __repr__(self) -> str:
        return f"HostScopeAllocator({self.cidr!r}, {len(self._used)}/{self.capacity} used)"

    def _in_range(self, ip: str, where: str) -> int:
        value = int(parse_address(ip, where))
        if not self._first <= value <= self._last:
            raise AddressUnavailable(
                f"{_text(value)} is not in the usable range {self.first}-{self.last} of pod CIDR {self.cidr}"
            )
        return value


def _check_owner(owner: object) -> None:
    if not isinstance(owner, str) or not owner:
        raise ValidationError(f"owner must be a non-empty string, got {owner!r}", "owner")


def _text(value: int) -> str:
    return str(ipaddress.IPv4Address(value))
