"""The addresses of this network namespace's interfaces, read over rtnetlink (stdlib socket + struct).

Order follows Go's net.Interfaces()/Addrs(): by interface index, then as the kernel lists them (IPv4 before
IPv6), so ``IP:`` lines come out as traefik/whoami prints them (127.0.0.1, ::1, the pod IP, its link-local).
"""

from __future__ import annotations

import os
import socket
import struct

_NLMSG_HDR = struct.Struct("=LHHLL")  # length, type, flags, seq, pid
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, ifindex
_RTATTR = struct.Struct("=HH")  # length, type
_RTM_NEWADDR, _RTM_GETADDR = 20, 22
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_IFA_ADDRESS, _IFA_LOCAL = 1, 2


def interface_addresses() -> list[str]:
    """Every IPv4/IPv6 address of every interface in the current netns; [] if netlink is unavailable."""
    try:
        messages = _dump_addresses()
    except OSError:
        return []
    found: list[tuple[int, str]] = []
    for payload in messages:
        family, _prefix, _flags, _scope, index = _IFADDRMSG.unpack_from(payload)
        attrs = _attributes(payload[_IFADDRMSG.size :])
        # With IFA_LOCAL present (point-to-point), IFA_ADDRESS is the peer: the local address is IFA_LOCAL.
        raw = attrs.get(_IFA_LOCAL, attrs.get(_IFA_ADDRESS))
        if raw is None:
            continue
        if family == socket.AF_INET and len(raw) == 4:
            found.append((index, socket.inet_ntop(socket.AF_INET, raw)))
        elif family == socket.AF_INET6 and len(raw) == 16:
            found.append((index, socket.inet_ntop(socket.AF_INET6, raw)))
    found.sort(key=lambda item: item[0])  # stable: keeps the kernel's order within an interface
    return [addr for _, addr in found]


def _dump_addresses() -> list[bytes]:
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.settimeout(2.0)
        sock.bind((0, 0))
        seq = os.getpid() & 0xFFFF
        body = _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        header = _NLMSG_HDR.pack(_NLMSG_HDR.size + len(body), _RTM_GETADDR, _NLM_F_REQUEST | _NLM_F_DUMP, seq, 0)
        sock.sendall(header + body)
        messages: list[bytes] = []
        while True:
            data = sock.recv(65536)
            offset = 0
            while offset + _NLMSG_HDR.size <= len(data):
                length, kind, _flags, msg_seq, _pid = _NLMSG_HDR.unpack_from(data, offset)
                if length < _NLMSG_HDR.size:
                    return messages
                payload = data[offset + _NLMSG_HDR.size : offset + length]
                offset += (length + 3) & ~3
                if msg_seq != seq:
                    continue
                if kind == _NLMSG_DONE:
                    return messages
                if kind == _NLMSG_ERROR:
                    raise OSError("netlink: RTM_GETADDR dump failed")
                if kind == _RTM_NEWADDR and len(payload) >= _IFADDRMSG.size:
                    messages.append(payload)
            if not data:
                return messages


def _attributes(data: bytes) -> dict[int, bytes]:
    attrs: dict[int, bytes] = {}
    offset = 0
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            break
        attrs.setdefault(kind, data[offset + _RTATTR.size : offset + length])
        offset += (length + 3) & ~3
    return attrs
