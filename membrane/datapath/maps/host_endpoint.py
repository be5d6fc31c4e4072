"""mb_host_ep: the host endpoint of the host firewall (bpf/lib/maps.h struct host_endpoint, one entry at
key 0; datapath: bpf/lib/host_firewall.h from from_netdev, to_netdev and from_container).

ep_id 0 turns the host firewall off (the node's traffic is neither tracked nor filtered); otherwise
the host endpoint's rows in mb_policy carry ep_id and ``flags`` says which directions are enforced.
"""

from __future__ import annotations

import ctypes
from ctypes import c_uint16, c_uint32
from dataclasses import dataclass

from membrane.datapath.bpf.syscalls import map_lookup, map_update
from membrane.datapath.maps.pinned import PinnedMap
from membrane.model.errors import ValidationError

MAP_NAME = "mb_host_ep"
BPF_MAP_TYPE_ARRAY = 2
INGRESS_ENFORCED = 1 << 0  # POLICY_INGRESS_ENFORCED (maps.h)
EGRESS_ENFORCED = 1 << 1  # POLICY_EGRESS_ENFORCED


class HostEndpointKey(ctypes.Structure):
    _fields_ = [("index", c_uint32)]


class HostEndpointValue(ctypes.Structure):
    """struct host_endpoint."""

    _fields_ = [("ep_id", c_uint16), ("flags", c_uint16), ("pad", c_uint32)]


HOST_EP_MIRRORS: tuple[tuple[str, type[ctypes.Structure]], ...] = (("host_endpoint", HostEndpointValue),)


@dataclass(frozen=True)
class HostEndpointState:
    """What the datapath knows of the host endpoint; ep_id 0 = host firewall off."""

    ep_id: int = 0
    ingress: bool = False
    egress: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.ep_id <= 0xFFFF:
            raise ValidationError(f"host endpoint id {self.ep_id} does not fit 16 bits", "mb_host_ep")
        if self.ep_id == 0 and (self.ingress or self.egress):
            raise ValidationError("host endpoint: enforcement without an endpoint id", "mb_host_ep")

    def to_c(self) -> HostEndpointValue:
        flags = (INGRESS_ENFORCED if self.ingress else 0) | (EGRESS_ENFORCED if self.egress else 0)
        return HostEndpointValue(ep_id=self.ep_id, flags=flags)

    @classmethod
    def from_c(cls, value: HostEndpointValue) -> HostEndpointState:
        if not value.ep_id:
            return cls()
        return cls(value.ep_id, bool(value.flags & INGRESS_ENFORCED), bool(value.flags & EGRESS_ENFORCED))


class HostEndpointMap(PinnedMap):
    """``HostEndpointMap.open(pin_dir)``: read and write the one host endpoint entry."""

    NAME = MAP_NAME
    MAP_TYPE = BPF_MAP_TYPE_ARRAY
    KEY = HostEndpointKey
    VALUE = HostEndpointValue

    def read(self) -> HostEndpointState:
        value = HostEndpointValue()
        map_lookup(self.fd, HostEndpointKey(0), value, what=self.NAME)
        return HostEndpointState.from_c(value)

    def write(self, state: HostEndpointState) -> None:
        map_update(self.fd, HostEndpointKey(0), state.to_c(), what=self.NAME)
