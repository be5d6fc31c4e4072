"""Build and parse the few frames the program tests need (Ethernet, ARP, IPv4/ICMP)."""

from __future__ import annotations

import ipaddress
import struct

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
BROADCAST = "ff:ff:ff:ff:ff:ff"


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def ip_bytes(ip: str) -> bytes:
    return ipaddress.IPv4Address(ip).packed


def ethernet(dst: str, src: str, proto: int, payload: bytes) -> bytes:
    return mac_bytes(dst) + mac_bytes(src) + struct.pack("!H", proto) + payload


def arp(op: int, sha: str, sip: str, tha: str, tip: str, hrd: int = 1, pro: int = ETH_P_IP) -> bytes:
    return struct.pack("!HHBBH", hrd, pro, 6, 4, op) + mac_bytes(sha) + ip_bytes(sip) + mac_bytes(tha) + ip_bytes(tip)


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(src: str, dst: str, payload: bytes, ttl: int = 64, proto: int = 1, ident: int = 0x1234) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, ttl, proto, 0,
                         ip_bytes(src), ip_bytes(dst))
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + payload


def icmp_echo(ident: int = 1, seq: int = 1, data: bytes = b"membrane") -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + data
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


# BPF_PROG_TEST_RUN runs a tc program on the test's loopback device (ifindex 1 in every netns),
# so from_container takes its sender from lo's binding in mb_lxc.
TEST_RUN_IFINDEX = 1


def send_as(endpoints, ip: str) -> None:  # endpoints: membrane.datapath.maps.endpoints.EndpointsMap
    """Let the next from_container test run be a packet from the pod with address ``ip``."""
    endpoints.devices.update(TEST_RUN_IFINDEX, ip)
