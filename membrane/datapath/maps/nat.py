"""mb_nat and mb_host_config: SNAT tuples of BPF masquerade and NodePort, and the node device's
configuration (bpf/lib/maps.h struct nat_key/nat_entry/host_config; datapath: bpf/host.c and
bpf/lib/nat.h).

The datapath creates and ages NAT entries (an LRU map); user space lists and flushes them and
writes the one host_config entry (node IP, ipv4NativeRoutingCIDR, masquerade on/off).
"""

from __future__ import annotations

import ctypes
import ipaddress
import struct
from collections.abc import Iterator
from ctypes import c_uint8, c_uint16, c_uint32
from dataclasses import dataclass

from membrane.datapath.bpf.syscalls import map_delete, map_keys, map_lookup, map_update
from membrane.datapath.maps.pinned import BPF_MAP_TYPE_LRU_HASH, PinnedMap
from membrane.model.errors import ValidationError

NAT_MAP = "mb_nat"
HOST_CONFIG_MAP = "mb_host_config"
BPF_MAP_TYPE_ARRAY = 2

NAT_DIR_OUT = 1  # outgoing tuple before SNAT -> new source
NAT_DIR_IN = 2  # reply tuple at the node -> original destination (+ frontend for NodePort)
NAT_DIR_REV_DNAT = 3  # reply of a locally served NodePort connection -> frontend as source
DIRECTION_NAMES = {NAT_DIR_OUT: "out", NAT_DIR_IN: "in", NAT_DIR_REV_DNAT: "rev-dnat"}
NAT_F_NODEPORT = 1 << 0
HOST_F_MASQUERADE = 1 << 0
HOST_F_HOST_ROUTING = 1 << 1  # eBPF host routing (bpf/lib/fib.h)
HOST_F_IP_MASQ_AGENT = 1 << 2  # mb_ipmasq_v4 names more destinations not to masquerade (bpf/lib/ipmasq.h)
NAT_PORT_MIN, NAT_PORT_MAX = 61000, 65535
PROTOCOLS = {1: "ICMP", 6: "TCP", 17: "UDP"}


class NatKey(ctypes.Structure):
    """struct nat_key (addresses and ports in network byte order)."""

    _fields_ = [("saddr", c_uint32), ("daddr", c_uint32), ("sport", c_uint16), ("dport", c_uint16),
                ("protocol", c_uint8), ("direction", c_uint8), ("pad", c_uint16)]


class NatEntry(ctypes.Structure):
    """struct nat_entry."""

    _fields_ = [("addr", c_uint32), ("rev_addr", c_uint32), ("port", c_uint16), ("rev_port", c_uint16),
                ("flags", c_uint16), ("pad", c_uint16), ("created", c_uint32), ("pad2", c_uint32)]


class HostConfig(ctypes.Structure):
    """struct host_config."""

    _fields_ = [("node_ip", c_uint32), ("native_cidr", c_uint32), ("native_prefix", c_uint8), ("pad1", c_uint8),
                ("flags", c_uint16), ("pad2", c_uint32)]


class _ArrayKey(ctypes.Structure):
    _fields_ = [("index", c_uint32)]


NAT_MIRRORS: tuple[tuple[str, type[ctypes.Structure]], ...] = (
    ("nat_key", NatKey),
    ("nat_entry", NatEntry),
    ("host_config", HostConfig),
)


def _net_addr(address: str) -> int:
    return struct.unpack("=I", ipaddress.IPv4Address(address).packed)[0]


def _addr_text(value: int) -> str:
    return str(ipaddress.IPv4Address(struct.pack("=I", value)))


def _host_port(value: int) -> int:
    return struct.unpack("!H", struct.pack("=H", value))[0]


@dataclass(frozen=True)
class NatRecord:
    """One mb_nat entry, addresses as text and ports in host order."""

    protocol: int
    direction: int
    saddr: str
    sport: int
    daddr: str
    dport: int
    addr: str
    port: int
    rev_addr: str
    rev_port: int
    flags: int

    @classmethod
    def from_c(cls, key: NatKey, value: NatEntry) -> NatRecord:
        return cls(key.protocol, key.direction, _addr_text(key.saddr), _host_port(key.sport), _addr_text(key.daddr),
                   _host_port(key.dport), _addr_text(value.addr), _host_port(value.port),
                   _addr_text(value.rev_addr), _host_port(value.rev_port), value.flags)

    def describe(self) -> str:
        proto = PROTOCOLS.get(self.protocol, str(self.protocol))
        text = (f"{proto} {DIRECTION_NAMES.get(self.direction, self.direction)} {self.saddr}:{self.sport} -> "
                f"{self.daddr}:{self.dport} => {self.addr}:{self.port}")
        if self.flags & NAT_F_NODEPORT and self.direction == NAT_DIR_IN:
            text += f" (from {self.rev_addr}:{self.rev_port})"
        return text


class NatMap(PinnedMap):
    """``NatMap.open(pin_dir)``: list and flush the datapath's SNAT entries (mb_nat)."""

    NAME = NAT_MAP
    MAP_TYPE = BPF_MAP_TYPE_LRU_HASH
    KEY = NatKey
    VALUE = NatEntry

    def entries(self) -> Iterator[NatRecord]:
        value = NatEntry()
        for key in list(map_keys(self.fd, NatKey, what=self.NAME)):
            if map_lookup(self.fd, key, value, what=self.NAME):
                yield NatRecord.from_c(key, value)

    def flush(self) -> int:
        removed = 0
        for key in list(map_keys(self.fd, NatKey, what=self.NAME)):
            removed += bool(map_delete(self.fd, key, what=self.NAME))
        return removed


@dataclass(frozen=True)
class HostSettings:
    """What bpf/host.c needs to know about its node."""

    node_ip: str
    native_routing_cidr: str | None = None  # None: nothing is exempt but nodes and local pods
    masquerade: bool = True
    host_routing: bool = False  # pod traffic bypasses the node's IP stack (bpf/lib/fib.h)
    ip_masq_agent: bool = False  # also exempt the destinations of mb_ipmasq_v4 (bpf/lib/ipmasq.h)

    def __post_init__(self) -> None:
        try:
            ipaddress.IPv4Address(self.node_ip)
            if self.native_routing_cidr is not None:
                ipaddress.IPv4Network(self.native_routing_cidr, strict=False)
        except ValueError as exc:
            raise ValidationError(f"host device settings: {exc}") from None
        if self.node_ip == "0.0.0.0":
            raise ValidationError("host device settings: node IP 0.0.0.0")

    def to_c(self) -> HostConfig:
        flags = ((HOST_F_MASQUERADE if self.masquerade else 0) | (HOST_F_HOST_ROUTING if self.host_routing else 0)
                 | (HOST_F_IP_MASQ_AGENT if self.ip_masq_agent else 0))
        value = HostConfig(node_ip=_net_addr(self.node_ip), flags=flags)
        if self.native_routing_cidr is not None:
            net = ipaddress.IPv4Network(self.native_routing_cidr, strict=False)
            value.native_cidr = _net_addr(str(net.network_address))
            value.native_prefix = net.prefixlen
        else:
            # prefix 32 of 0.0.0.0: matches no real destination
            value.native_cidr, value.native_prefix = 0, 32
        return value

    @classmethod
    def from_c(cls, value: HostConfig) -> HostSettings | None:
        if not value.node_ip:
            return None
        cidr = None
        if value.native_cidr or value.native_prefix != 32:
            cidr = f"{_addr_text(value.native_cidr)}/{value.native_prefix}"
        return cls(_addr_text(value.node_ip), cidr, bool(value.flags & HOST_F_MASQUERADE),
                   bool(value.flags & HOST_F_HOST_ROUTING), bool(value.flags & HOST_F_IP_MASQ_AGENT))


class HostConfigMap(PinnedMap):
    """``HostConfigMap.open(pin_dir)``: the node device's settings (mb_host_config, key 0)."""

    NAME = HOST_CONFIG_MAP
    MAP_TYPE = BPF_MAP_TYPE_ARRAY
    KEY = _ArrayKey
    VALUE = HostConfig

    def read(self) -> HostSettings | None:
        value = HostConfig()
        map_lookup(self.fd, _ArrayKey(0), value, what=self.NAME)
        return HostSettings.from_c(value)

    def write(self, settings: HostSettings | None) -> None:
        """Write the settings; None turns the host programs into pass-through."""
        value = settings.to_c() if settings is not None else HostConfig()
        map_update(self.fd, _ArrayKey(0), value, what=self.NAME)
