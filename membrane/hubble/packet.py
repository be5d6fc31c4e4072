"""Decoding of the packet bytes a datapath event carries (Ethernet, IPv4/IPv6, TCP, UDP, SCTP,
ICMPv4/ICMPv6) into Flow fields, and Hubble's L3/L4 summary text."""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass
from functools import lru_cache

from membrane.hubble.proto.flow import flow_pb2

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58
IPPROTO_SCTP = 132

ICMPV4_TYPES = {
    0: "EchoReply",
    3: "DestinationUnreachable",
    4: "SourceQuench",
    5: "Redirect",
    8: "EchoRequest",
    9: "RouterAdvertisement",
    10: "RouterSolicitation",
    11: "TimeExceeded",
    12: "ParameterProblem",
    13: "TimestampRequest",
    14: "TimestampReply",
    15: "InfoRequest",
    16: "InfoReply",
    17: "AddressMaskRequest",
    18: "AddressMaskReply",
}
ICMPV4_CODES = {
    3: (
        "Net",
        "Host",
        "Protocol",
        "Port",
        "FragmentationNeeded",
        "SourceRoutingFailed",
        "NetUnknown",
        "HostUnknown",
        "SourceIsolated",
        "NetAdminProhibited",
        "HostAdminProhibited",
        "NetTOS",
        "HostTOS",
        "CommAdminProhibited",
        "HostPrecedence",
        "PrecedenceCutoff",
    ),
    5: ("Network", "Host", "TOS+Network", "TOS+Host"),
    11: ("TTLExceeded", "FragmentReassemblyTimeExceeded"),
    12: ("PointerIndicatesError", "MissingOption", "BadLength"),
}
ICMPV6_TYPES = {
    1: "DestinationUnreachable",
    2: "PacketTooBig",
    3: "TimeExceeded",
    4: "ParameterProblem",
    128: "EchoRequest",
    129: "EchoReply",
    133: "RouterSolicitation",
    134: "RouterAdvertisement",
    135: "NeighborSolicitation",
    136: "NeighborAdvertisement",
    137: "Redirect",
}
ICMPV6_CODES = {
    1: (
        "NoRouteToDst",
        "AdminProhibited",
        "BeyondScopeOfSrc",
        "AddressUnreachable",
        "PortUnreachable",
        "SrcAddressFailedPolicy",
        "RejectRouteToDst",
    ),
    3: ("HopLimitExceeded", "FragmentReassemblyTimeExceeded"),
    4: ("ErroneousHeaderField", "UnrecognizedNextHeader", "UnrecognizedIPv6Option"),
}
# Order in which Hubble lists TCP flags in a summary.
TCP_FLAG_ORDER = ("SYN", "ACK", "RST", "FIN", "PSH", "URG", "ECE", "CWR", "NS")
_TCP_FLAG_BITS = {
    "FIN": 0x01,
    "SYN": 0x02,
    "RST": 0x04,
    "PSH": 0x08,
    "ACK": 0x10,
    "URG": 0x20,
    "ECE": 0x40,
    "CWR": 0x80,
}


@dataclass
class DecodedPacket:
    """What could be read from a frame; absent layers stay None."""

    ethernet: flow_pb2.Ethernet | None = None
    ip: flow_pb2.IP | None = None
    l4: flow_pb2.Layer4 | None = None
    summary: str = ""  # Hubble's L3/L4 summary when decode_frame knows it already (TCP), else ""


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def icmp_type_name(version: int, icmp_type: int, code: int) -> str:
    """gopacket's ICMP type/code text, e.g. `EchoRequest`, `DestinationUnreachable(Port)`."""
    types, codes = (ICMPV4_TYPES, ICMPV4_CODES) if version == 4 else (ICMPV6_TYPES, ICMPV6_CODES)
    name = types.get(icmp_type)
    if name is None:
        return f"{icmp_type}({code})"
    names = codes.get(icmp_type)
    if names is None:
        return name
    return f"{name}({names[code]})" if code < len(names) else f"{name}(Code: {code})"


@lru_cache(maxsize=512)
def _tcp_summary(offset_ns: int, bits: int) -> str:
    return f"TCP Flags: {tcp_flags_text(_tcp_flags(offset_ns, bits))}"


@lru_cache(maxsize=512)
def _tcp_flags(offset_ns: int, bits: int) -> flow_pb2.TCPFlags:
    flags = flow_pb2.TCPFlags(**{n: bool(bits & b) for n, b in _TCP_FLAG_BITS.items()})
    flags.NS = bool(offset_ns & 0x01)
    return flags


def _l4(proto: int, data: bytes, version: int) -> flow_pb2.Layer4 | None:
    if proto == IPPROTO_TCP and len(data) >= 14:
        sport, dport = struct.unpack_from("!HH", data)
        tcp = flow_pb2.TCP(source_port=sport, destination_port=dport)
        tcp.flags.CopyFrom(_tcp_flags(data[12] & 0x01, data[13]))
        return flow_pb2.Layer4(TCP=tcp)
    if proto == IPPROTO_UDP and len(data) >= 4:
        sport, dport = struct.unpack_from("!HH", data)
        return flow_pb2.Layer4(UDP=flow_pb2.UDP(source_port=sport, destination_port=dport))
    if proto == IPPROTO_SCTP and len(data) >= 4:
        sport, dport = struct.unpack_from("!HH", data)
        return flow_pb2.Layer4(SCTP=flow_pb2.SCTP(source_port=sport, destination_port=dport))
    if proto == IPPROTO_ICMP and version == 4 and len(data) >= 2:
        return flow_pb2.Layer4(ICMPv4=flow_pb2.ICMPv4(type=data[0], code=data[1]))
    if proto == IPPROTO_ICMPV6 and len(data) >= 2:
        return flow_pb2.Layer4(ICMPv6=flow_pb2.ICMPv6(type=data[0], code=data[1]))
    return None


# A flood of events repeats the same few addresses: their text forms are computed once.
@lru_cache(maxsize=4096)
def _ethernet(macs: bytes) -> flow_pb2.Ethernet:
    return flow_pb2.Ethernet(source=_mac(macs[6:12]), destination=_mac(macs[0:6]))


@lru_cache(maxsize=8192)
def _ipv4(addrs: bytes) -> flow_pb2.IP:
    return flow_pb2.IP(source=socket.inet_ntoa(addrs[:4]), destination=socket.inet_ntoa(addrs[4:]),
                       ipVersion=flow_pb2.IPv4)


def decode_frame(frame: bytes) -> DecodedPacket:
    """Decode an Ethernet frame (first byte = destination MAC); truncated layers are left out.
    The Ethernet and IPv4 messages are shared between calls (cached): copy them, never change them."""
    out = DecodedPacket()
    if len(frame) < 14:
        return out
    out.ethernet = _ethernet(bytes(frame[0:12]))
    ethertype, offset = struct.unpack_from("!H", frame, 12)[0], 14
    if ethertype == ETH_P_8021Q and len(frame) >= 18:
        ethertype, offset = struct.unpack_from("!H", frame, 16)[0], 18
    if ethertype == ETH_P_IP and len(frame) >= offset + 20:
        ihl = (frame[offset] & 0x0F) * 4
        proto = frame[offset + 9]
        out.ip = _ipv4(bytes(frame[offset + 12 : offset + 20]))
        frag = struct.unpack_from("!H", frame, offset + 6)[0] & 0x1FFF
        if frag == 0:
            l4_data = frame[offset + ihl :]
            out.l4 = _l4(proto, l4_data, 4)
            if proto == IPPROTO_TCP and out.l4 is not None:
                out.summary = _tcp_summary(l4_data[12] & 0x01, l4_data[13])
    elif ethertype == ETH_P_IPV6 and len(frame) >= offset + 40:
        proto = frame[offset + 6]
        src = ipaddress.IPv6Address(frame[offset + 8 : offset + 24])
        dst = ipaddress.IPv6Address(frame[offset + 24 : offset + 40])
        out.ip = flow_pb2.IP(source=str(src), destination=str(dst), ipVersion=flow_pb2.IPv6)
        out.l4 = _l4(proto, frame[offset + 40 :], 6)
    return out


def tcp_flags_text(flags: flow_pb2.TCPFlags) -> str:
    """`SYN, ACK` in Hubble's order."""
    return ", ".join(name for name in TCP_FLAG_ORDER if getattr(flags, name))


def summary(l4: flow_pb2.Layer4 | None, ip: flow_pb2.IP | None = None) -> str:
    """Hubble's L3/L4 summary: `TCP Flags: SYN`, `UDP`, `ICMPv4 EchoRequest`, …"""
    if l4 is None or l4.WhichOneof("protocol") is None:
        return "IPv6" if ip is not None and ip.ipVersion == flow_pb2.IPv6 else ("IPv4" if ip else "")
    kind = l4.WhichOneof("protocol")
    if kind == "TCP":
        return f"TCP Flags: {tcp_flags_text(l4.TCP.flags)}"
    if kind == "ICMPv4":
        return f"ICMPv4 {icmp_type_name(4, l4.ICMPv4.type, l4.ICMPv4.code)}"
    if kind == "ICMPv6":
        return f"ICMPv6 {icmp_type_name(6, l4.ICMPv6.type, l4.ICMPv6.code)}"
    return kind
