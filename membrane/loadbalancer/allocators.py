"""ClusterIP and NodePort allocators, with Kubernetes' wording on conflicts.

Each allocator maps a value (an IP of the service CIDR, or a port of the NodePort range) to its owner
(``namespace/name`` of the Service). Dynamic allocation scans from a cursor that moves past each value
handed out, so a just-released value is not reused at once and the result is deterministic.
``snapshot()``/``restore()`` round-trip through plain dicts (the lab keeps them in etcd).
"""

from __future__ import annotations

import ipaddress
from typing import Any

DEFAULT_SERVICE_CIDR = "10.96.0.0/16"
DNS_SERVICE_IP = "10.96.0.10"  # kube-dns: never handed out dynamically
DEFAULT_NODE_PORT_RANGE = (30000, 32767)


class AllocationError(ValueError):
    """A requested value is taken or out of range, or the range is full."""


class _Range:
    """Integers lo..hi (inclusive) owned by names; ``reserved`` values only by explicit request."""

    def __init__(self, lo: int, hi: int, reserved: frozenset[int] = frozenset()) -> None:
        if lo > hi:
            raise ValueError(f"empty range {lo}-{hi}")
        self.lo, self.hi = lo, hi
        self.reserved = reserved
        self.owners: dict[int, str] = {}
        self.cursor = lo

    def owned_by(self, owner: str) -> list[int]:
        return sorted(v for v, o in self.owners.items() if o == owner)

    def take(self, value: int, owner: str) -> None:
        self.owners[value] = owner

    def next_free(self) -> int | None:
        size = self.hi - self.lo + 1
        start = min(max(self.cursor, self.lo), self.hi) - self.lo
        for i in range(size):
            value = self.lo + (start + i) % size
            if value not in self.owners and value not in self.reserved:
                self.cursor = value + 1 if value < self.hi else self.lo
                return value
        return None

    def release(self, owner: str, keep: set[int]) -> list[int]:
        gone = [v for v, o in self.owners.items() if o == owner and v not in keep]
        for v in gone:
            del self.owners[v]
        return sorted(gone)


class ClusterIPAllocator:
    """ClusterIPs from the service CIDR: network and broadcast excluded, 10.96.0.10 kept for kube-dns."""

    def __init__(self, cidr: str = DEFAULT_SERVICE_CIDR, reserved: tuple[str, ...] = (DNS_SERVICE_IP,)) -> None:
        self.network = ipaddress.IPv4Network(cidr)
        if self.network.num_addresses < 4:
            raise ValueError(f"service CIDR {cidr} is too small")
        first, last = int(self.network.network_address) + 1, int(self.network.broadcast_address) - 1
        held = frozenset(int(ipaddress.IPv4Address(ip)) for ip in reserved
                         if ipaddress.IPv4Address(ip) in self.network)
        self._range = _Range(first, last, held)

    def allocate(self, owner: str, requested: str | None = None) -> str:
        """The owner's ClusterIP: ``requested`` if given and free (or already its own), else the next free one.

        An owner that already holds an IP gets it back when it requests nothing.
        """
        held = self._range.owned_by(owner)
        if not requested:
            if held:
                return str(ipaddress.IPv4Address(held[0]))
            value = self._range.next_free()
            if value is None:
                raise AllocationError(f"failed to allocate a ClusterIP for service {owner}: range is full "
                                      f"(service CIDR {self.network})")
            self._range.take(value, owner)
            return str(ipaddress.IPv4Address(value))
        try:
            addr = ipaddress.IPv4Address(requested)
        except ValueError:
            raise AllocationError(f"failed to allocate IP {requested} for service {owner}: "
                                  "not a valid IPv4 address") from None
        value = int(addr)
        if addr not in self.network or not self._range.lo <= value <= self._range.hi:
            raise AllocationError(f"failed to allocate IP {requested} for service {owner}: provided IP is not in "
                                  f"the valid range. The range of valid IPs is {self.network}")
        other = self._range.owners.get(value)
        if other is not None and other != owner:
            raise AllocationError(f"failed to allocate IP {requested} for service {owner}: provided IP is already "
                                  f"allocated to service {other}")
        self._range.take(value, owner)
        return requested

    def release(self, owner: str, keep: tuple[str, ...] = ()) -> list[str]:
        """Free the owner's IPs except ``keep``; returns the freed ones."""
        kept = {int(ipaddress.IPv4Address(ip)) for ip in keep}
        return [str(ipaddress.IPv4Address(v)) for v in self._range.release(owner, kept)]

    def owner_of(self, ip: str) -> str | None:
        return self._range.owners.get(int(ipaddress.IPv4Address(ip)))

    def allocated(self) -> dict[str, str]:
        """IP → owner, sorted by IP."""
        return {str(ipaddress.IPv4Address(v)): o for v, o in sorted(self._range.owners.items())}

    def snapshot(self) -> dict[str, Any]:
        return {"cidr": str(self.network), "next": str(ipaddress.IPv4Address(self._range.cursor)),
                "allocated": self.allocated()}

    @classmethod
    def restore(cls, data: dict[str, Any], reserved: tuple[str, ...] = (DNS_SERVICE_IP,)) -> ClusterIPAllocator:
        alloc = cls(str(data.get("cidr") or DEFAULT_SERVICE_CIDR), reserved)
        for ip, owner in (data.get("allocated") or {}).items():
            alloc._range.take(int(ipaddress.IPv4Address(ip)), str(owner))
        if data.get("next"):
            alloc._range.cursor = int(ipaddress.IPv4Address(data["next"]))
        return alloc


class NodePortAllocator:
    """NodePorts from 30000–32767; a service may use one port number for several protocols."""

    def __init__(self, port_range: tuple[int, int] = DEFAULT_NODE_PORT_RANGE) -> None:
        self._range = _Range(*port_range)

    @property
    def port_range(self) -> tuple[int, int]:
        return (self._range.lo, self._range.hi)

    def allocate(self, owner: str, requested: int | None = None) -> int:
        """``requested`` if free or already the owner's, else (None/0) the next free port."""
        lo, hi = self.port_range
        if not requested:
            value = self._range.next_free()
            if value is None:
                raise AllocationError(f"failed to allocate a nodePort for service {owner}: range is full ({lo}-{hi})")
            self._range.take(value, owner)
            return value
        if not lo <= requested <= hi:
            raise AllocationError(f"failed to allocate nodePort {requested} for service {owner}: provided port is "
                                  f"not in the valid range. The range of valid ports is {lo}-{hi}")
        other = self._range.owners.get(requested)
        if other is not None and other != owner:
            raise AllocationError(f"failed to allocate nodePort {requested} for service {owner}: provided port is "
                                  f"already allocated to service {other}")
        self._range.take(requested, owner)
        return requested

    def release(self, owner: str, keep: tuple[int, ...] = ()) -> list[int]:
        """Free the owner's ports except ``keep``; returns the freed ones."""
        return self._range.release(owner, set(keep))

    def owner_of(self, port: int) -> str | None:
        return self._range.owners.get(port)

    def allocated(self) -> dict[int, str]:
        return dict(sorted(self._range.owners.items()))

    def snapshot(self) -> dict[str, Any]:
        lo, hi = self.port_range
        return {"range": f"{lo}-{hi}", "next": self._range.cursor,
                "allocated": {str(p): o for p, o in self.allocated().items()}}

    @classmethod
    def restore(cls, data: dict[str, Any]) -> NodePortAllocator:
        lo, _, hi = str(data.get("range") or "").partition("-")
        alloc = cls((int(lo), int(hi)) if lo and hi else DEFAULT_NODE_PORT_RANGE)
        for port, owner in (data.get("allocated") or {}).items():
            alloc._range.take(int(port), str(owner))
        if data.get("next"):
            alloc._range.cursor = int(data["next"])
        return alloc
