"""A minimal rtnetlink client for the pod ADD path: the few requests it makes, packed with ``struct``.

pyroute2 builds and parses every message through its generic message classes; for the six requests of
a pod's interface that cost ~5 ms of CPU per ADD under the GIL, the agent's largest per-pod stage at a
burst (issue 16). Here a request is a few ``struct.pack`` calls and a reply is read for the two fields
used (index, MAC). Everything else stays on pyroute2 (membrane.datapath.linux.links, routes).

Failures raise ``RtnlError`` (an OSError carrying the kernel's errno); callers turn it into NetError with
what they were doing.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct

RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 18, 20, 24
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 4, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
IFF_UP = 0x1
RT_TABLE_MAIN, RTPROT_STATIC, RTN_UNICAST = 254, 4, 1
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
RTNH_F_ONLINK = 0x4
NLA_TYPE_MASK = 0x3FFF

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBi")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags


class RtnlError(OSError):
    """The kernel refused a request: ``errno`` is its error code."""


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _name(kind: int, value: str) -> bytes:
    return _attr(kind, value.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack("=I", value))


def _ip(kind: int, address: str) -> bytes:
    return _attr(kind, ipaddress.IPv4Address(address).packed)


def _ifinfo(index: int = 0, up: bool = False) -> bytes:
    return _IFINFO.pack(socket.AF_UNSPEC, 0, index, IFF_UP if up else 0, IFF_UP if up else 0)


class Rtnl:
    """One rtnetlink socket in the calling thread's network namespace (the namespace is fixed at
    creation). Requests run one at a time and wait for their answer."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        try:
            self._sock.bind((0, 0))
        except BaseException:
            self._sock.close()
            raise
        self._seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def _request(self, kind: int, flags: int, body: bytes) -> bytes | None:
        """Send one request; the reply's payload (a GET), or None for an acknowledged change."""
        self._seq += 1
        seq = self._seq
        self._sock.send(_HDR.pack(_HDR.size + len(body), kind, NLM_F_REQUEST | flags, seq, 0) + body)
        while True:
            data = self._sock.recv(65536)
            offset = 0
            while offset + _HDR.size <= len(data):
                length, msg_type, _flags, msg_seq, _pid = _HDR.unpack_from(data, offset)
                if length < _HDR.size:
                    raise RtnlError(errno.EBADMSG, "rtnetlink: malformed reply")
                payload = data[offset + _HDR.size:offset + length]
                offset += (length + 3) & ~3
                if msg_seq != seq:
                    continue  # an answer to an earlier request we no longer wait for
                if msg_type == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise RtnlError(code, os.strerror(code))
                    return None
                if msg_type == NLMSG_DONE:
                    return None
                return payload

    # ---- links --------------------------------------------------------------------------------------
    def add_veth(self, name: str, peer: str, peer_netns_fd: int, mtu: int) -> None:
        """``name`` (up) here and its peer ``peer`` created in the namespace of ``peer_netns_fd``."""
        peer_info = _ifinfo() + _name(IFLA_IFNAME, peer) + _u32(IFLA_MTU, mtu) + _u32(IFLA_NET_NS_FD, peer_netns_fd)
        info = _name(IFLA_INFO_KIND, "veth") + _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_info))
        body = _ifinfo(up=True) + _name(IFLA_IFNAME, name) + _u32(IFLA_MTU, mtu) + _attr(IFLA_LINKINFO, info)
        self._request(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)

    def link_up(self, *, name: str | None = None, index: int = 0) -> None:
        body = _ifinfo(index, up=True) + (_name(IFLA_IFNAME, name) if name is not None else b"")
        self._request(RTM_NEWLINK, NLM_F_ACK, body)

    def index_and_mac(self, name: str) -> tuple[int, str]:
        """One RTM_GETLINK by name: the device's index and MAC address (``aa:bb:…``)."""
        reply = self._request(RTM_GETLINK, 0, _ifinfo() + _name(IFLA_IFNAME, name))
        if reply is None or len(reply) < _IFINFO.size:
            raise RtnlError(errno.EBADMSG, f"rtnetlink: no link in the reply for {name}")
        index = _IFINFO.unpack_from(reply)[2]
        offset = _IFINFO.size
        while offset + 4 <= len(reply):
            length, kind = struct.unpack_from("=HH", reply, offset)
            if length < 4:
                break
            if kind & NLA_TYPE_MASK == IFLA_ADDRESS:
                return index, reply[offset + 4:offset + length].hex(":")
            offset += (length + 3) & ~3
        return index, ""

    # ---- addresses and routes -----------------------------------------------------------------------
    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        body = _IFADDR.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
        body += _ip(IFA_LOCAL, address) + _ip(IFA_ADDRESS, address)
        self._request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)

    def replace_route(self, dst: str, dst_len: int, oif: int, *, gateway: str | None = None,
                      scope: int = RT_SCOPE_UNIVERSE, onlink: bool = False, proto: int = RTPROT_STATIC) -> None:
        body = _RTMSG.pack(socket.AF_INET, dst_len, 0, 0, RT_TABLE_MAIN, proto, scope, RTN_UNICAST,
                           RTNH_F_ONLINK if onlink else 0)
        if dst_len:
            body += _ip(RTA_DST, dst)
        body += _u32(RTA_OIF, oif)
        if gateway is not None:
            body += _ip(RTA_GATEWAY, gateway)
        self._request(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, body)
