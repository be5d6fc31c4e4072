"""mb_ipcache: security identity and tunnel endpoint by IPv4 prefix (LPM trie, bpf/lib/maps.h).

The datapath takes the identity of a peer from the longest prefix covering its address, and
world (2) when none does.
"""

from __future__ import annotations

import ctypes
import ipaddress
import struct
from ctypes import c_uint8, c_uint16, c_uint32
from dataclasses import dataclass

from membrane.datapath.bpf.syscalls import map_delete, map_keys, map_lookup, map_update
from membrane.datapath.maps.pinned import BPF_MAP_TYPE_LPM_TRIE, PinnedMap
from membrane.model.errors import ValidationError

MAP_NAME = "mb_ipcache"
IDENTITY_WORLD = 2  # what the datapath assumes for an address no prefix covers
IPCACHE_F_NODE = 1 << 0  # a node's address with a CIDR identity (policyCIDRMatchMode=nodes): still a node


class IpcacheKey(ctypes.Structure):
    """struct ipcache_key: prefix length, then the address in network byte order."""

    _fields_ = [("prefixlen", c_uint32), ("ip4", c_uint32)]


class IpcacheValue(ctypes.Structure):
    """struct ipcache_value."""

    _fields_ = [
        ("sec_identity", c_uint32),
        ("tunnel_endpoint", c_uint32),
        ("flags", c_uint8),
        ("pad1", c_uint8),
        ("pad2", c_uint16),
    ]


def _net_u32(address: ipaddress.IPv4Address) -> int:
    return struct.unpack("=I", address.packed)[0]


def _address(value: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(struct.pack("=I", value))


def ipv4_prefix(prefix: str | ipaddress.IPv4Network | ipaddress.IPv4Address) -> ipaddress.IPv4Network:
    """``10.0.1.0/24``, ``10.0.1.5`` (a /32) or an address object; host bits must be 0."""
    try:
        return ipaddress.IPv4Network(prefix)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"{prefix!r} is not an IPv4 prefix ({exc})", "ipcache key") from None


def ipcache_key(prefix: str | ipaddress.IPv4Network | ipaddress.IPv4Address) -> IpcacheKey:
    network = ipv4_prefix(prefix)
    return IpcacheKey(prefixlen=network.prefixlen, ip4=_net_u32(network.network_address))


@dataclass(frozen=True)
class IpcacheEntry:
    """What the datapath knows about a prefix."""

    identity: int
    tunnel_endpoint: str = "0.0.0.0"
    flags: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.identity, int) or isinstance(self.identity, bool) or not 0 < self.identity < 1 << 32:
            raise ValidationError(f"identity {self.identity!r}: must be an integer in 1..{(1 << 32) - 1}",
                                  "ipcache entry")
        try:
            object.__setattr__(self, "tunnel_endpoint", str(ipaddress.IPv4Address(self.tunnel_endpoint)))
        except (ValueError, TypeError):
            raise ValidationError(f"tunnel endpoint {self.tunnel_endpoint!r}: not an IPv4 address",
                                  "ipcache entry") from None
        if not isinstance(self.flags, int) or not 0 <= self.flags < 256:
            raise ValidationError(f"flags {self.flags!r}: must be an integer in 0..255", "ipcache entry")

    def to_c(self) -> IpcacheValue:
        return IpcacheValue(sec_identity=self.identity,
                            tunnel_endpoint=_net_u32(ipaddress.IPv4Address(self.tunnel_endpoint)), flags=self.flags)

    @classmethod
    def from_c(cls, value: IpcacheValue) -> IpcacheEntry:
        return cls(value.sec_identity, str(_address(value.tunnel_endpoint)), value.flags)

    def describe(self) -> str:
        """The value column of ``cilium-dbg bpf ipcache list``."""
        return (f"identity={self.identity} encryptkey=0 tunnelendpoint={self.tunnel_endpoint} "
                f"flags={'<none>' if not self.flags else hex(self.flags)}")


class IpcacheMap(PinnedMap):
    """``IpcacheMap.open(pin_dir)``: identities by IPv4 prefix."""

    NAME = MAP_NAME
    MAP_TYPE = BPF_MAP_TYPE_LPM_TRIE
    KEY = IpcacheKey
    VALUE = IpcacheValue

    def update(self, prefix: str | ipaddress.IPv4Network, entry: IpcacheEntry) -> None:
        """Insert or replace the entry of exactly this prefix."""
        if not isinstance(entry, IpcacheEntry):
            raise ValidationError(f"expected an IpcacheEntry, got {type(entry).__name__}", "ipcache value")
        map_update(self.fd, ipcache_key(prefix), entry.to_c(), what=f"{self.NAME} {prefix}")

    def delete(self, prefix: str | ipaddress.IPv4Network) -> bool:
        """Remove exactly this prefix; False if it was not there."""
        return map_delete(self.fd, ipcache_key(prefix), what=f"{self.NAME} {prefix}")

    def lookup(self, ip: str | ipaddress.IPv4Address) -> IpcacheEntry | None:
        """Longest-prefix match for an address, as the datapath does it (None: world)."""
        value = IpcacheValue()
        key = ipcache_key(ipaddress.IPv4Network(f"{ipaddress.IPv4Address(ip)}/32"))
        if not map_lookup(self.fd, key, value, what=f"{self.NAME} {ip}"):
            return None
        return IpcacheEntry.from_c(value)

    def identity_of(self, ip: str | ipaddress.IPv4Address) -> int:
        entry = self.lookup(ip)
        return entry.identity if entry else IDENTITY_WORLD

    def items(self) -> list[tuple[str, IpcacheEntry]]:
        """Every prefix (``a.b.c.d/n``) with its entry, sorted by address then length."""
        found: dict[ipaddress.IPv4Network, IpcacheEntry] = {}
        for key in map_keys(self.fd, IpcacheKey, what=self.NAME):
            network = ipaddress.IPv4Network((_address(key.ip4), key.prefixlen))
            value = IpcacheValue()
            # A lookup bounded by the key's own length finds the entry itself (never a longer one).
            if map_lookup(self.fd, key, value, what=self.NAME):
                found[network] = IpcacheEntry.from_c(value)
        return [(str(network), entry) for network, entry in sorted(found.items())]

    def rows(self) -> list[tuple[str, str]]:
        """``cilium-dbg bpf ipcache list`` rows: (prefix, value text)."""
        return [(prefix, entry.describe()) for prefix, entry in self.items()]
