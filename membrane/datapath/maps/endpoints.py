"""The node's local endpoints in BPF: mb_endpoints (by IPv4 address, struct endpoint_key/_info) and
mb_lxc (the endpoint bound to each pod veth, by ifindex, struct lxc_key/_info), kept together.

from_container takes the sender from mb_lxc and drops what claims another address, so the two
maps are written as one: every endpoint entry has its device entry, and no device entry outlives
its endpoint."""

from __future__ import annotations

import ctypes
import ipaddress
import re
import struct
from ctypes import c_uint8, c_uint16, c_uint32
from dataclasses import dataclass

from membrane.datapath.bpf.syscalls import map_delete, map_keys, map_lookup, map_update
from membrane.datapath.maps.pinned import BPF_MAP_TYPE_HASH, PinnedMap
from membrane.model.errors import ValidationError

MAP_NAME = "mb_endpoints"
LXC_MAP_NAME = "mb_lxc"

# EndpointRecord.flags (bpf/lib/maps.h): policy is enforced in that direction; without the bit
# every connection in that direction is allowed.
POLICY_INGRESS_ENFORCED = 1 << 0
POLICY_EGRESS_ENFORCED = 1 << 1
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class EndpointKey(ctypes.Structure):
    """struct endpoint_key: the IPv4 address in network byte order."""

    _fields_ = [("ip4", c_uint32)]


class EndpointInfo(ctypes.Structure):
    """struct endpoint_info."""

    _fields_ = [
        ("ifindex", c_uint32),
        ("ep_id", c_uint16),
        ("flags", c_uint16),
        ("pod_mac", c_uint8 * 6),
        ("lxc_mac", c_uint8 * 6),
        ("sec_identity", c_uint32),
        ("pad", c_uint32),
    ]


class LxcKey(ctypes.Structure):
    """struct lxc_key: the ifindex of a pod veth's host side."""

    _fields_ = [("ifindex", c_uint32)]


class LxcInfo(ctypes.Structure):
    """struct lxc_info: the address (network byte order) of the endpoint bound to the device."""

    _fields_ = [("ip4", c_uint32), ("pad", c_uint32)]


def _mac(value: str, field: str) -> str:
    mac = value.strip().lower() if isinstance(value, str) else value
    if not isinstance(mac, str) or not _MAC.match(mac):
        raise ValidationError(f"{field} {value!r}: not a MAC address (expected six hex pairs like 0a:58:0a:00:00:01)",
                              "endpoint record")
    return mac


def _uint(value: int, bits: int, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < (1 << bits):
        raise ValidationError(f"{field} {value!r}: must be an integer in 0..{(1 << bits) - 1}", "endpoint record")
    return value


@dataclass(frozen=True)
class EndpointRecord:
    """What the datapath knows about a local endpoint. MACs are normalised to lower case."""

    ifindex: int
    ep_id: int
    pod_mac: str
    lxc_mac: str
    flags: int = 0
    sec_identity: int = 0

    def __post_init__(self) -> None:
        _uint(self.ifindex, 32, "ifindex")
        if self.ifindex == 0:
            raise ValidationError("ifindex 0: must name a device", "endpoint record")
        _uint(self.ep_id, 16, "ep_id")
        _uint(self.flags, 16, "flags")
        _uint(self.sec_identity, 32, "sec_identity")
        object.__setattr__(self, "pod_mac", _mac(self.pod_mac, "pod_mac"))
        object.__setattr__(self, "lxc_mac", _mac(self.lxc_mac, "lxc_mac"))

    def to_c(self) -> EndpointInfo:
        return EndpointInfo(
            ifindex=self.ifindex,
            ep_id=self.ep_id,
            flags=self.flags,
            pod_mac=(c_uint8 * 6)(*bytes.fromhex(self.pod_mac.replace(":", ""))),
            lxc_mac=(c_uint8 * 6)(*bytes.fromhex(self.lxc_mac.replace(":", ""))),
            sec_identity=self.sec_identity,
            pad=0,
        )

    @classmethod
    def from_c(cls, info: EndpointInfo) -> EndpointRecord:
        return cls(
            ifindex=info.ifindex,
            ep_id=info.ep_id,
            pod_mac=":".join(f"{b:02x}" for b in info.pod_mac),
            lxc_mac=":".join(f"{b:02x}" for b in info.lxc_mac),
            flags=info.flags,
            sec_identity=info.sec_identity,
        )


def endpoint_key(ip: str | ipaddress.IPv4Address) -> EndpointKey:
    try:
        address = ipaddress.IPv4Address(ip)
    except (ValueError, TypeError):
        raise ValidationError(f"{ip!r} is not an IPv4 address", "endpoints map key") from None
    # The C key holds the address in network order: keep the bytes, read them as a native u32.
    return EndpointKey(ip4=struct.unpack("=I", address.packed)[0])


def key_address(key: EndpointKey) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(struct.pack("=I", key.ip4))


class LxcMap(PinnedMap):
    """``LxcMap.open(pin_dir)``: pod veth ifindex → the address of the endpoint bound to it.
    Written through :class:`EndpointsMap`, which keeps it in step with mb_endpoints."""

    NAME = LXC_MAP_NAME
    MAP_TYPE = BPF_MAP_TYPE_HASH
    KEY = LxcKey
    VALUE = LxcInfo

    def update(self, ifindex: int, ip: str | ipaddress.IPv4Address) -> None:
        key = LxcKey(ifindex=_uint(ifindex, 32, "ifindex"))
        map_update(self.fd, key, LxcInfo(ip4=endpoint_key(ip).ip4, pad=0), what=f"{self.NAME} {ifindex}")

    def delete(self, ifindex: int) -> bool:
        return map_delete(self.fd, LxcKey(ifindex=ifindex), what=f"{self.NAME} {ifindex}")

    def get(self, ifindex: int) -> str | None:
        info = LxcInfo()
        if not map_lookup(self.fd, LxcKey(ifindex=ifindex), info, what=f"{self.NAME} {ifindex}"):
            return None
        return str(key_address(EndpointKey(ip4=info.ip4)))

    def items(self) -> list[tuple[int, str]]:
        """Every (ifindex, endpoint address), sorted by ifindex."""
        found = {}
        for key in map_keys(self.fd, LxcKey, what=self.NAME):
            address = self.get(key.ifindex)
            if address is not None:
                found[key.ifindex] = address
        return sorted(found.items())


class EndpointsMap(PinnedMap):
    """``EndpointsMap.open(pin_dir)``: the node's local endpoints, keyed by pod IPv4 address, with
    their devices (mb_lxc, :attr:`devices`) kept in step."""

    NAME = MAP_NAME
    MAP_TYPE = BPF_MAP_TYPE_HASH
    KEY = EndpointKey
    VALUE = EndpointInfo

    def __init__(self, fd: int, path: str, devices: LxcMap | None = None) -> None:
        super().__init__(fd, path)
        self._devices = devices

    @classmethod
    def open(cls, pin_dir: str) -> EndpointsMap:
        endpoints = super().open(pin_dir)
        try:
            endpoints._devices = LxcMap.open(pin_dir)
        except BaseException:
            endpoints.close()
            raise
        return endpoints

    @property
    def devices(self) -> LxcMap:
        """mb_lxc: which endpoint each pod veth belongs to."""
        if self._devices is None:
            raise ValidationError("endpoints map opened without its device map (mb_lxc)", "endpoints map")
        return self._devices

    def update(self, ip: str | ipaddress.IPv4Address, record: EndpointRecord) -> None:
        """Insert or replace the entry of ``ip``, then bind its device to it. A device the entry
        used before is unbound, so its old veth can send no more."""
        if not isinstance(record, EndpointRecord):
            raise ValidationError(f"expected an EndpointRecord, got {type(record).__name__}", "endpoints map value")
        previous = self.get(ip)
        map_update(self.fd, endpoint_key(ip), record.to_c(), what=f"{self.NAME} {ip}")
        self.devices.update(record.ifindex, ip)
        if previous is not None and previous.ifindex != record.ifindex:
            self._unbind(previous.ifindex, ip)

    def delete(self, ip: str | ipaddress.IPv4Address) -> bool:
        """Remove the entry of ``ip`` and its device binding; False if there was none."""
        previous = self.get(ip)
        if previous is not None:
            self._unbind(previous.ifindex, ip)
        return map_delete(self.fd, endpoint_key(ip), what=f"{self.NAME} {ip}")

    def prune_devices(self) -> list[int]:
        """Unbind every device whose endpoint entry is gone or names another device (left by a
        crash between the two writes); returns their ifindexes."""
        endpoints = dict(self.items())
        stale = [ifindex for ifindex, ip in self.devices.items()
                 if ip not in endpoints or endpoints[ip].ifindex != ifindex]
        for ifindex in stale:
            self.devices.delete(ifindex)
        return stale

    def _unbind(self, ifindex: int, ip: str | ipaddress.IPv4Address) -> None:
        if self.devices.get(ifindex) == str(ipaddress.IPv4Address(ip)):
            self.devices.delete(ifindex)

    def close(self) -> None:
        if getattr(self, "_devices", None) is not None:
            self._devices.close()
        super().close()

    def get(self, ip: str | ipaddress.IPv4Address) -> EndpointRecord | None:
        info = EndpointInfo()
        if not map_lookup(self.fd, endpoint_key(ip), info, what=f"{self.NAME} {ip}"):
            return None
        return EndpointRecord.from_c(info)

    def items(self) -> list[tuple[str, EndpointRecord]]:
        """Every entry as (IPv4 address text, record), sorted by address; entries deleted while
        we walk are left out."""
        found: dict[ipaddress.IPv4Address, EndpointRecord] = {}
        for key in map_keys(self.fd, EndpointKey, what=self.NAME):
            info = EndpointInfo()
            if map_lookup(self.fd, key, info, what=self.NAME):
                found[key_address(key)] = EndpointRecord.from_c(info)
        return [(str(address), record) for address, record in sorted(found.items())]

    def keys(self) -> list[str]:
        """Every endpoint address (IPv4 text), sorted."""
        addresses = {key_address(key) for key in map_keys(self.fd, EndpointKey, what=self.NAME)}
        return [str(address) for address in sorted(addresses)]
