"""Answer ARP for addresses this node announces, from a raw packet socket per device (L2 announcements).

Cilium answers in BPF (``cilium_l2_responder_v4`` looked up in from-netdev); Membrane answers from the
agent: ARP is a handful of frames per client per minute, and a socket dies with the agent that holds
the announcement lease, so a node whose agent is gone or hung stops answering by itself instead of
leaving a pinned map entry behind that keeps a second node answering after failover.

``set_entries({(ip, device), ...}, valid_until)`` replaces what is answered, until ``valid_until``
(time.monotonic(); the announcer's renew deadline), so an agent that was frozen and resumes never answers
from a table that is no longer its own; ``gratuitous(ip, device)`` sends an unsolicited ARP request
(sender = target = ip) so neighbours update their caches on takeover.
The kernel never answers for these addresses itself: they are not configured on any device.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

ETH_P_ARP = 0x0806
PACKET_OUTGOING = 4
BROADCAST = b"\xff" * 6
_ARP_HEADER = struct.pack("!HHBB", 1, 0x0800, 6, 4)  # Ethernet, IPv4, hlen 6, plen 4


@dataclass(frozen=True)
class Entry:
    ip: str
    device: str
    responses: int


def arp_frame(op: int, src_mac: bytes, dst_mac: bytes, sender_mac: bytes, sender_ip: str, target_mac: bytes,
              target_ip: str) -> bytes:
    """An Ethernet frame carrying an IPv4 ARP request (op 1) or reply (op 2)."""
    eth = dst_mac + src_mac + struct.pack("!H", ETH_P_ARP)
    body = _ARP_HEADER + struct.pack("!H", op) + sender_mac + socket.inet_aton(sender_ip) + target_mac \
        + socket.inet_aton(target_ip)
    return eth + body


def parse_request(frame: bytes) -> tuple[bytes, str, str] | None:
    """(sender MAC, sender IP, target IP) of an Ethernet/IPv4 ARP request, else None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06" or frame[14:20] != _ARP_HEADER:
        return None
    if struct.unpack("!H", frame[20:22])[0] != 1:
        return None
    return frame[22:28], socket.inet_ntoa(frame[28:32]), socket.inet_ntoa(frame[38:42])


class ARPResponder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: dict[str, socket.socket] = {}
        self._macs: dict[str, bytes] = {}
        self._answer: dict[tuple[str, str], int] = {}  # (ip, device) -> responses sent
        self._valid_until = float("inf")
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name="arp-responder", daemon=True)
        self._thread.start()

    def set_entries(self, wanted: set[tuple[str, str]], valid_until: float = float("inf")) -> None:
        with self._lock:
            self._valid_until = valid_until
            self._answer = {k: self._answer.get(k, 0) for k in wanted}
            devices = {d for _, d in wanted}
            for dev in list(self._socks):
                if dev not in devices:
                    self._socks.pop(dev).close()
            for dev in devices - set(self._socks):
                try:
                    self._open(dev)
                except OSError as exc:
                    log.warning("L2 announcements: cannot listen for ARP on %s: %s", dev, exc)
        self._wake_w.send(b"x")

    def _open(self, dev: str) -> None:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        sock.bind((dev, ETH_P_ARP))
        sock.setblocking(False)
        self._socks[dev] = sock
        self._macs[dev] = sock.getsockname()[4]

    def entries(self) -> list[Entry]:
        with self._lock:
            return [Entry(ip, dev, n) for (ip, dev), n in sorted(self._answer.items())]

    def gratuitous(self, ip: str, device: str) -> None:
        with self._lock:
            sock, mac = self._socks.get(device), self._macs.get(device)
            if sock is None or mac is None:
                return
            try:
                sock.send(arp_frame(1, mac, BROADCAST, mac, ip, b"\x00" * 6, ip))
            except OSError as exc:
                log.warning("gratuitous ARP for %s on %s failed: %s", ip, device, exc)

    def close(self) -> None:
        self._stop.set()
        self._wake_w.send(b"x")
        self._thread.join(2)
        with self._lock:
            for sock in self._socks.values():
                sock.close()
            self._socks.clear()
        self._wake_r.close()
        self._wake_w.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                socks = dict(self._socks)
            readable, _, _ = select.select([self._wake_r, *socks.values()], [], [], 1.0)
            for sock in readable:
                if sock is self._wake_r:
                    self._wake_r.recv(64)
                    continue
                dev = next((d for d, s in socks.items() if s is sock), None)
                if dev is not None:
                    self._serve(dev, sock)

    def _serve(self, dev: str, sock: socket.socket) -> None:
        try:
            frame, addr = sock.recvfrom(2048)
        except OSError:
            return
        if addr[2] == PACKET_OUTGOING:
            return
        req = parse_request(frame)
        if req is None:
            return
        sender_mac, sender_ip, target_ip = req
        with self._lock:
            key = (target_ip, dev)
            mac = self._macs.get(dev)
            if key not in self._answer or mac is None or sender_ip == target_ip:
                return
            if time.monotonic() > self._valid_until:
                return
            try:
                sock.send(arp_frame(2, mac, sender_mac, mac, target_ip, sender_mac, sender_ip))
                self._answer[key] += 1
            except OSError as exc:
                log.warning("ARP reply for %s on %s failed: %s", target_ip, dev, exc)
