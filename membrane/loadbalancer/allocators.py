"""ClusterIP and NodePort ranges as the API server's allocators see them, with its wording.

Each range maps a value (an IP of the service CIDR, or a port of the NodePort range) to its owner
(``namespace/name`` of the Service). They are built from what the store holds (one etcd key per
allocated value) and changed in memory while one apply is admitted; the store then writes the
difference in the apply's transaction.

Like kube-apiserver (KEP-3070, KEP-3668), a range has a small static band at its start (for values that
users ask for) and dynamic allocation takes the lowest free value above it first, so an automatically
allocated Service rarely takes the value a manifest asks for later. The first IP of the service CIDR
(10.96.0.1) always belongs to ``default/kubernetes``; 10.96.0.10 (kube-dns) is only given on request.
Errors carry the reason only (``provided port is already allocated``); admission adds the field path.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping

DEFAULT_SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE = "default/kubernetes"
DNS_SERVICE_IP = "10.96.0.10"  # kube-dns: never handed out dynamically
DEFAULT_NODE_PORT_RANGE = (30000, 32767)


class AllocationError(ValueError):
    """A requested value is taken or out of range (``str``: the API server's reason)."""


class RangeFull(AllocationError):
    """Dynamic allocation found no free value."""


def _bands(lo: int, hi: int, static: int) -> Iterator[int]:
    """The values lo..hi, the ones above the static band first."""
    yield from range(min(lo + static, hi + 1), hi + 1)
    yield from range(lo, min(lo + static, hi + 1))


class _Owners:
    """Integers lo..hi owned by names."""

    def __init__(self, lo: int, hi: int, static: int, skip: frozenset[int]) -> None:
        self.lo, self.hi, self.static, self.skip = lo, hi, static, skip
        self.owners: dict[int, str] = {}

    def claim(self, value: int, owner: str) -> bool:
        """Take ``value`` for ``owner``; False if someone else holds it (nothing changes then)."""
        other = self.owners.get(value)
        if other is not None and other != owner:
            return False
        self.owners[value] = owner
        return True

    def next_free(self, owner: str) -> int | None:
        for value in _bands(self.lo, self.hi, self.static):
            if value not in self.owners and value not in self.skip:
                self.owners[value] = owner
                return value
        return None

    def release(self, value: int, owner: str) -> None:
        if self.owners.get(value) == owner:
            del self.owners[value]

    def owned_by(self, owner: str) -> list[int]:
        return sorted(v for v, o in self.owners.items() if o == owner)


class ServiceIPRange:
    """ClusterIPs of the service CIDR (network and broadcast addresses excluded)."""

    def __init__(self, cidr: str = DEFAULT_SERVICE_CIDR, owners: Mapping[str, str] | None = None,
                 dns_ip: str = DNS_SERVICE_IP) -> None:
        self.network = ipaddress.IPv4Network(cidr)
        if self.network.num_addresses < 4:
            raise ValueError(f"service CIDR {cidr} is too small")
        size = self.network.num_addresses
        first, last = int(self.network.network_address) + 1, int(self.network.broadcast_address) - 1
        skip = {int(ipaddress.IPv4Address(dns_ip))} if ipaddress.IPv4Address(dns_ip) in self.network else set()
        self._values = _Owners(first, last, min(max(16, size // 16), 256), frozenset(skip))
        self._values.owners[first] = KUBERNETES_SERVICE
        for ip, owner in (owners or {}).items():
            self._values.owners[int(ipaddress.IPv4Address(ip))] = owner

    @property
    def kubernetes_ip(self) -> str:
        return str(ipaddress.IPv4Address(self._values.lo))

    def claim(self, ip: str, owner: str) -> str:
        """``ip`` for ``owner`` (it may already be its own); AllocationError if taken or out of range."""
        addr = ipaddress.IPv4Address(ip)
        value = int(addr)
        if not self._values.lo <= value <= self._values.hi:
            raise AllocationError(f"the provided IP ({ip}) is not in the valid range. "
                                  f"The range of valid IPs is {self.network}")
        if not self._values.claim(value, owner):
            raise AllocationError("provided IP is already allocated")
        return str(addr)

    def allocate_next(self, owner: str) -> str:
        value = self._values.next_free(owner)
        if value is None:
            raise RangeFull("range is full")
        return str(ipaddress.IPv4Address(value))

    def release(self, ip: str, owner: str) -> None:
        self._values.release(int(ipaddress.IPv4Address(ip)), owner)

    def owner_of(self, ip: str) -> str | None:
        return self._values.owners.get(int(ipaddress.IPv4Address(ip)))

    def owned_by(self, owner: str) -> list[str]:
        return [str(ipaddress.IPv4Address(v)) for v in self._values.owned_by(owner)]

    def allocated(self) -> dict[str, str]:
        """IP → owner, sorted by IP (10.96.0.1 included)."""
        return {str(ipaddress.IPv4Address(v)): o for v, o in sorted(self._values.owners.items())}


class NodePortRange:
    """NodePorts of 30000–32767; one Service may use one number for several protocols."""

    def __init__(self, port_range: tuple[int, int] = DEFAULT_NODE_PORT_RANGE,
                 owners: Mapping[int, str] | None = None) -> None:
        lo, hi = port_range
        if lo > hi:
            raise ValueError(f"empty port range {lo}-{hi}")
        size = hi - lo + 1
        self._values = _Owners(lo, hi, min(max(16, size // 32), 128), frozenset())
        for port, owner in (owners or {}).items():
            self._values.owners[int(port)] = owner

    @property
    def port_range(self) -> tuple[int, int]:
        return (self._values.lo, self._values.hi)

    def claim(self, port: int, owner: str) -> int:
        lo, hi = self.port_range
        if not lo <= port <= hi:
            raise AllocationError(f"provided port is not in the valid range. The range of valid ports is {lo}-{hi}")
        if not self._values.claim(port, owner):
            raise AllocationError("provided port is already allocated")
        return port

    def allocate_next(self, owner: str) -> int:
        value = self._values.next_free(owner)
        if value is None:
            raise RangeFull("range is full")
        return value

    def release(self, port: int, owner: str) -> None:
        self._values.release(port, owner)

    def owner_of(self, port: int) -> str | None:
        return self._values.owners.get(port)

    def owned_by(self, owner: str) -> list[int]:
        return self._values.owned_by(owner)

    def allocated(self) -> dict[int, str]:
        return dict(sorted(self._values.owners.items()))
