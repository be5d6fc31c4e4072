"""mb_egress_v4: egress gateway policy rows (bpf/lib/maps.h struct egress_key/egress_value, LPM trie).

Key: prefix length (32 for the source plus the destination's bits), source pod IP, destination
network; value: egress IP and gateway node IP (0.0.0.0: no gateway; 0.0.0.1: excluded). The agent
keeps it equal to membrane.egressgw.rows through a reconciler (membrane.datapath.maps.egress_ops);
``membrane bpf egress list`` reads it, as ``cilium-dbg bpf egress list`` does.
"""

from __future__ import annotations

import ctypes
import ipaddress
import struct
from ctypes import c_uint32

from membrane.datapath.bpf.syscalls import map_delete, map_keys, map_lookup, map_update
from membrane.datapath.maps.pinned import BPF_MAP_TYPE_LPM_TRIE, PinnedMap
from membrane.model.errors import ValidationError

MAP_NAME = "mb_egress_v4"
STATIC_PREFIX = 32  # the source address is always matched whole


class EgressKey(ctypes.Structure):
    """struct egress_key: prefixlen = 32 + destination bits; addresses in network byte order."""

    _fields_ = [("prefixlen", c_uint32), ("saddr", c_uint32), ("daddr", c_uint32)]


class EgressValue(ctypes.Structure):
    """struct egress_value."""

    _fields_ = [("egress_ip", c_uint32), ("gateway_ip", c_uint32)]


EGRESS_MIRRORS: tuple[tuple[str, type[ctypes.Structure]], ...] = (
    ("egress_key", EgressKey),
    ("egress_value", EgressValue),
)


def _u32(address: ipaddress.IPv4Address) -> int:
    return struct.unpack("=I", address.packed)[0]


def _addr(value: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(struct.pack("=I", value))


def egress_key(source_ip: str, destination: str | ipaddress.IPv4Network) -> EgressKey:
    try:
        src = ipaddress.IPv4Address(source_ip)
        net = ipaddress.IPv4Network(destination, strict=False)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"({source_ip!r}, {destination!r}) is not an IPv4 source and prefix ({exc})",
                              "egress key") from None
    return EgressKey(prefixlen=STATIC_PREFIX + net.prefixlen, saddr=_u32(src), daddr=_u32(net.network_address))


def _row(key: EgressKey) -> tuple[str, str]:
    net = ipaddress.IPv4Network((_addr(key.daddr), key.prefixlen - STATIC_PREFIX))
    return str(_addr(key.saddr)), str(net)


class EgressMap(PinnedMap):
    """``EgressMap.open(pin_dir)``: (source IP, destination CIDR) -> (gateway IP, egress IP)."""

    NAME = MAP_NAME
    MAP_TYPE = BPF_MAP_TYPE_LPM_TRIE
    KEY = EgressKey
    VALUE = EgressValue

    def entries(self) -> dict[tuple[str, str], tuple[str, str]]:
        """(source IP, destination CIDR) -> (gateway IP, egress IP), as text."""
        out = {}
        value = EgressValue()
        for key in list(map_keys(self.fd, EgressKey, what=self.NAME)):
            if map_lookup(self.fd, key, value, what=self.NAME):
                out[_row(key)] = (str(_addr(value.gateway_ip)), str(_addr(value.egress_ip)))
        return out

    def update(self, source_ip: str, destination: str, gateway_ip: str, egress_ip: str) -> None:
        value = EgressValue(egress_ip=_u32(ipaddress.IPv4Address(egress_ip)),
                            gateway_ip=_u32(ipaddress.IPv4Address(gateway_ip)))
        map_update(self.fd, egress_key(source_ip, destination), value, what=f"{self.NAME} {source_ip} {destination}")

    def delete(self, source_ip: str, destination: str) -> bool:
        return map_delete(self.fd, egress_key(source_ip, destination), what=f"{self.NAME} {source_ip} {destination}")

    def lookup(self, source_ip: str, destination_ip: str) -> tuple[str, str] | None:
        """What the datapath finds for one packet (longest destination prefix), or None."""
        value = EgressValue()
        if not map_lookup(self.fd, egress_key(source_ip, f"{destination_ip}/32"), value, what=self.NAME):
            return None
        return str(_addr(value.gateway_ip)), str(_addr(value.egress_ip))
