"""mb_sock_netns, mb_lb_rev_sk, mb_lb_sock_aff: the maps of the socket-level load balancer
(bpf/lib/sock_lb.h; the programs are bpf/sock.c).

mb_sock_netns holds the network namespace cookie of each of this node's pods: the only sockets
the socket LB translates. The value keeps the endpoint's address, so an endpoint's entry can be
found and removed after its namespace is gone.
"""

from __future__ import annotations

import ctypes
import ipaddress
import struct
from ctypes import c_uint16, c_uint32, c_uint64

from membrane.datapath.bpf.syscalls import map_delete, map_keys, map_lookup, map_update
from membrane.datapath.maps.lb import LbAffinity
from membrane.datapath.maps.pinned import BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LRU_HASH, PinnedMap

NETNS_MAP = "mb_sock_netns"
REV_SK_MAP = "mb_lb_rev_sk"
SOCK_AFFINITY_MAP = "mb_lb_sock_aff"


class SockNetnsKey(ctypes.Structure):
    """struct sock_netns_key."""

    _fields_ = [("cookie", c_uint64)]


class SockNetnsInfo(ctypes.Structure):
    """struct sock_netns_info (ipv4 in network byte order)."""

    _fields_ = [("ipv4", c_uint32), ("flags", c_uint32)]


class LbRevSkKey(ctypes.Structure):
    """struct lb_rev_sk_key (address and port in network byte order)."""

    _fields_ = [("cookie", c_uint64), ("address", c_uint32), ("port", c_uint16), ("pad", c_uint16)]


class LbRevSk(ctypes.Structure):
    """struct lb_rev_sk."""

    _fields_ = [("address", c_uint32), ("port", c_uint16), ("rev_nat_index", c_uint16)]


class LbSockAffKey(ctypes.Structure):
    """struct lb_sock_aff_key."""

    _fields_ = [("netns_cookie", c_uint64), ("rev_nat_index", c_uint16), ("pad", c_uint16 * 3)]


SOCK_LB_MIRRORS: tuple[tuple[str, type[ctypes.Structure]], ...] = (
    ("sock_netns_key", SockNetnsKey), ("sock_netns_info", SockNetnsInfo), ("lb_rev_sk_key", LbRevSkKey),
    ("lb_rev_sk", LbRevSk), ("lb_sock_aff_key", LbSockAffKey),
)


def _net_addr(address: str) -> int:
    return struct.unpack("=I", ipaddress.IPv4Address(address).packed)[0]


def _addr_text(value: int) -> str:
    return str(ipaddress.IPv4Address(struct.pack("=I", value)))


class SockNetnsMap(PinnedMap):
    """The pod network namespaces the socket LB acts on: cookie -> endpoint address."""

    NAME, KEY, VALUE, MAP_TYPE = NETNS_MAP, SockNetnsKey, SockNetnsInfo, BPF_MAP_TYPE_HASH

    def add(self, cookie: int, ipv4: str) -> None:
        map_update(self.fd, SockNetnsKey(cookie), SockNetnsInfo(_net_addr(ipv4), 0), what=self.NAME)

    def remove(self, cookie: int) -> bool:
        return map_delete(self.fd, SockNetnsKey(cookie), what=self.NAME)

    def remove_address(self, ipv4: str) -> int:
        """Remove every namespace recorded for the endpoint address; returns how many."""
        want = _net_addr(ipv4)
        return sum(self.remove(cookie) for cookie, addr in self._raw() if addr == want)

    def _raw(self) -> list[tuple[int, int]]:
        rows = []
        for key in map_keys(self.fd, SockNetnsKey, what=self.NAME):
            value = SockNetnsInfo()
            if map_lookup(self.fd, key, value, what=self.NAME):
                rows.append((key.cookie, value.ipv4))
        return rows

    def items(self) -> dict[int, str]:
        """cookie -> endpoint address."""
        return {cookie: _addr_text(addr) for cookie, addr in self._raw()}


class RevSkMap(PinnedMap):
    """Translated sockets: (socket cookie, backend) -> frontend."""

    NAME, KEY, VALUE, MAP_TYPE = REV_SK_MAP, LbRevSkKey, LbRevSk, BPF_MAP_TYPE_LRU_HASH

    def items(self) -> list[tuple[int, str, int, str, int]]:
        """(socket cookie, backend address, backend port, frontend address, frontend port)."""
        rows = []
        for key in map_keys(self.fd, LbRevSkKey, what=self.NAME):
            value = LbRevSk()
            if map_lookup(self.fd, key, value, what=self.NAME):
                rows.append((key.cookie, _addr_text(key.address), _host_port(key.port),
                             _addr_text(value.address), _host_port(value.port)))
        return rows


class SockAffinityMap(PinnedMap):
    NAME, KEY, VALUE, MAP_TYPE = SOCK_AFFINITY_MAP, LbSockAffKey, LbAffinity, BPF_MAP_TYPE_LRU_HASH


def _host_port(value: int) -> int:
    return struct.unpack("!H", struct.pack("=H", value))[0]
