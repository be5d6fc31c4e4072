"""mb_tunnel and mb_tunnel_config: the node owning each remote pod CIDR, and this node's VXLAN
device (bpf/lib/maps.h struct tunnel_key/tunnel_value/tunnel_config; datapath: bpf/lib/tunnel.h
encapsulates in from_container, bpf/overlay.c decapsulates).

The agent keeps mb_tunnel equal to the other nodes' pod CIDRs (``sync``); ``membrane bpf tunnel
list`` reads it, as ``cilium-dbg bpf tunnel list`` does.
"""

from __future__ import annotations

import ctypes
import ipaddress
import struct
from collections.abc import Mapping
from ctypes import c_uint32

from membrane.datapath.bpf.syscalls import map_delete, map_keys, map_lookup, map_update
from membrane.datapath.maps.pinned import BPF_MAP_TYPE_LPM_TRIE, PinnedMap
from membrane.model.errors import ValidationError

TUNNEL_MAP = "mb_tunnel"
TUNNEL_CONFIG_MAP = "mb_tunnel_config"
BPF_MAP_TYPE_ARRAY = 2


class TunnelKey(ctypes.Structure):
    """struct tunnel_key: prefix length, then the pod CIDR in network byte order."""

    _fields_ = [("prefixlen", c_uint32), ("ip4", c_uint32)]


TUNNEL_F_IPIP = 1 << 0  # IP-in-IP built in BPF (bpf/lib/ipip.h) instead of the VXLAN device
TUNNEL_TYPES = {"vxlan": 0, "ipip": TUNNEL_F_IPIP}


class TunnelValue(ctypes.Structure):
    """struct tunnel_value: the owning node's address (network order) and TUNNEL_F_* flags."""

    _fields_ = [("node_ip", c_uint32), ("flags", c_uint32)]


class TunnelConfig(ctypes.Structure):
    """struct tunnel_config."""

    _fields_ = [("ifindex", c_uint32), ("pad", c_uint32)]


class _ArrayKey(ctypes.Structure):
    _fields_ = [("index", c_uint32)]


TUNNEL_MIRRORS: tuple[tuple[str, type[ctypes.Structure]], ...] = (
    ("tunnel_key", TunnelKey),
    ("tunnel_value", TunnelValue),
    ("tunnel_config", TunnelConfig),
)


def _u32(address: ipaddress.IPv4Address) -> int:
    return struct.unpack("=I", address.packed)[0]


def _addr(value: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(struct.pack("=I", value))


def tunnel_key(prefix: str | ipaddress.IPv4Network) -> TunnelKey:
    try:
        net = ipaddress.IPv4Network(prefix)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"{prefix!r} is not an IPv4 prefix ({exc})", "tunnel key") from None
    return TunnelKey(prefixlen=net.prefixlen, ip4=_u32(net.network_address))


class TunnelMap(PinnedMap):
    """``TunnelMap.open(pin_dir)``: pod CIDR -> node IP of the node owning it."""

    NAME = TUNNEL_MAP
    MAP_TYPE = BPF_MAP_TYPE_LPM_TRIE
    KEY = TunnelKey
    VALUE = TunnelValue

    def entries(self) -> dict[ipaddress.IPv4Network, tuple[ipaddress.IPv4Address, str]]:
        """Pod CIDR -> (node IP, "vxlan" | "ipip")."""
        out = {}
        value = TunnelValue()
        for key in list(map_keys(self.fd, TunnelKey, what=self.NAME)):
            if map_lookup(self.fd, key, value, what=self.NAME):
                kind = "ipip" if value.flags & TUNNEL_F_IPIP else "vxlan"
                out[ipaddress.IPv4Network((_addr(key.ip4), key.prefixlen))] = (_addr(value.node_ip), kind)
        return out

    def update(self, prefix: str, node_ip: str, kind: str = "vxlan") -> None:
        """One row: pod CIDR ``prefix`` is reached through ``node_ip`` by ``kind`` (the reconciler's write)."""
        if kind not in TUNNEL_TYPES:
            raise ValidationError(f"tunnel type {kind!r} is not one of {', '.join(TUNNEL_TYPES)}", prefix)
        value = TunnelValue(node_ip=_u32(ipaddress.IPv4Address(node_ip)), flags=TUNNEL_TYPES[kind])
        map_update(self.fd, tunnel_key(prefix), value, what=f"{self.NAME} {prefix}")

    def delete(self, prefix: str) -> bool:
        return map_delete(self.fd, tunnel_key(prefix), what=f"{self.NAME} {prefix}")

    def sync(self, wanted: Mapping[str, str | tuple[str, str]]) -> tuple[int, int]:
        """Make the map hold exactly ``wanted`` (pod CIDR -> node IP, or (node IP, "vxlan" | "ipip"));
        returns (written, removed). Writes before it removes, so a CIDR that stays is never missing."""
        want: dict[ipaddress.IPv4Network, tuple[ipaddress.IPv4Address, str]] = {}
        for cidr, target in wanted.items():
            ip, kind = (target, "vxlan") if isinstance(target, str) else target
            if kind not in TUNNEL_TYPES:
                raise ValidationError(f"tunnel type {kind!r} is not one of {', '.join(TUNNEL_TYPES)}", cidr)
            want[ipaddress.IPv4Network(cidr)] = (ipaddress.IPv4Address(ip), kind)
        have = self.entries()
        written = removed = 0
        for net, (node_ip, kind) in sorted(want.items(), key=lambda kv: str(kv[0])):
            if have.get(net) != (node_ip, kind):
                value = TunnelValue(node_ip=_u32(node_ip), flags=TUNNEL_TYPES[kind])
                map_update(self.fd, tunnel_key(net), value, what=f"{self.NAME} {net}")
                written += 1
        for net in sorted(set(have) - set(want), key=str):
            removed += bool(map_delete(self.fd, tunnel_key(net), what=f"{self.NAME} {net}"))
        return written, removed


class TunnelConfigMap(PinnedMap):
    """``TunnelConfigMap.open(pin_dir)``: the VXLAN device's ifindex (0: tunnel routing off)."""

    NAME = TUNNEL_CONFIG_MAP
    MAP_TYPE = BPF_MAP_TYPE_ARRAY
    KEY = _ArrayKey
    VALUE = TunnelConfig

    def read(self) -> int:
        value = TunnelConfig()
        map_lookup(self.fd, _ArrayKey(0), value, what=self.NAME)
        return value.ifindex

    def write(self, ifindex: int) -> None:
        map_update(self.fd, _ArrayKey(0), TunnelConfig(ifindex=ifindex), what=self.NAME)
