"""mb_ipmasq_v4: ip-masq-agent's non-masquerade CIDRs (LPM trie; bpf/lib/maps.h struct
ipmasq_key/ipmasq_value, read by bpf/lib/ipmasq.h from to_netdev).

The agent keeps the map equal to the effective list (``sync``); ``membrane bpf ipmasq list`` reads it.
"""

from __future__ import annotations

import ctypes
import ipaddress
import struct
from collections.abc import Iterable
from ctypes import c_uint32

from membrane.datapath.bpf.syscalls import map_delete, map_keys, map_update
from membrane.datapath.maps.pinned import BPF_MAP_TYPE_LPM_TRIE, PinnedMap
from membrane.model.errors import ValidationError

MAP_NAME = "mb_ipmasq_v4"


class IpMasqKey(ctypes.Structure):
    """struct ipmasq_key: prefix length, then the address in network byte order."""

    _fields_ = [("prefixlen", c_uint32), ("ip4", c_uint32)]


class IpMasqValue(ctypes.Structure):
    """struct ipmasq_value."""

    _fields_ = [("flags", c_uint32)]


IPMASQ_MIRRORS: tuple[tuple[str, type[ctypes.Structure]], ...] = (
    ("ipmasq_key", IpMasqKey),
    ("ipmasq_value", IpMasqValue),
)


def ipmasq_key(prefix: str | ipaddress.IPv4Network) -> IpMasqKey:
    try:
        net = ipaddress.IPv4Network(prefix)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"{prefix!r} is not an IPv4 prefix ({exc})", "ipmasq key") from None
    return IpMasqKey(prefixlen=net.prefixlen, ip4=struct.unpack("=I", net.network_address.packed)[0])


def _prefix(key: IpMasqKey) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network((struct.pack("=I", key.ip4), key.prefixlen))


class IpMasqMap(PinnedMap):
    """``IpMasqMap.open(pin_dir)``: the prefixes whose destinations are not masqueraded."""

    NAME = MAP_NAME
    MAP_TYPE = BPF_MAP_TYPE_LPM_TRIE
    KEY = IpMasqKey
    VALUE = IpMasqValue

    def prefixes(self) -> list[ipaddress.IPv4Network]:
        """Every prefix in the map, sorted by address then length."""
        keys = list(map_keys(self.fd, IpMasqKey, what=self.NAME))
        return sorted((_prefix(k) for k in keys), key=lambda n: (n.network_address, n.prefixlen))

    def update(self, prefix: str) -> None:
        """One row: destinations in ``prefix`` are not masqueraded (the reconciler's write)."""
        map_update(self.fd, ipmasq_key(prefix), IpMasqValue(), what=f"{self.NAME} {prefix}")

    def delete(self, prefix: str) -> bool:
        return map_delete(self.fd, ipmasq_key(prefix), what=f"{self.NAME} {prefix}")

    def sync(self, wanted: Iterable[str | ipaddress.IPv4Network]) -> tuple[int, int]:
        """Make the map hold exactly ``wanted``; returns (added, removed). Adds before it removes,
        so a prefix that stays is never missing."""
        want = {ipaddress.IPv4Network(p) for p in wanted}
        have = set(self.prefixes())
        for net in sorted(want - have, key=str):
            map_update(self.fd, ipmasq_key(net), IpMasqValue(), what=f"{self.NAME} {net}")
        for net in sorted(have - want, key=str):
            map_delete(self.fd, ipmasq_key(net), what=f"{self.NAME} {net}")
        return len(want - have), len(have - want)
