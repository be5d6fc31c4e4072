"""mb_ct: connection tracking entries (bpf/lib/maps.h struct ct_key/ct_entry), for listing and
flushing. The datapath creates and ages them (bpf/lib/conntrack.h); lifetimes are seconds of
the monotonic clock, the one ``time.monotonic()`` reads."""

from __future__ import annotations

import ctypes
import ipaddress
import struct
import time
from ctypes import c_uint8, c_uint16, c_uint32, c_uint64
from dataclasses import dataclass

from membrane.datapath.bpf.syscalls import map_delete, map_keys, map_lookup
from membrane.datapath.maps.pinned import BPF_MAP_TYPE_LRU_HASH, PinnedMap

MAP_NAME = "mb_ct"
CT_INGRESS = 1  # first seen by to_container (the destination endpoint)
CT_EGRESS = 2  # first seen by from_container (the source endpoint)
CT_SERVICE = 3  # a connection to a service frontend: its backend (bpf/lib/lb.h)
CT_F_TX_CLOSING = 1 << 0
CT_F_RX_CLOSING = 1 << 1
CT_F_SEEN_REPLY = 1 << 2
CT_F_HAIRPIN = 1 << 3  # a pod reaching itself through a service, SNATed to 169.254.42.1 (bpf/lib/lb.h)
CT_F_PROXY_UPSTREAM = 1 << 4  # an L7 proxy's upstream connection: replies go to the proxy (bpf/lib/proxy.h)
PROTOCOLS = {1: "ICMP", 6: "TCP", 17: "UDP", 132: "SCTP"}


class CtKey(ctypes.Structure):
    """struct ct_key (addresses and ports in network byte order)."""

    _fields_ = [
        ("saddr", c_uint32),
        ("daddr", c_uint32),
        ("sport", c_uint16),
        ("dport", c_uint16),
        ("protocol", c_uint8),
        ("direction", c_uint8),
        ("pad", c_uint16),
    ]


class CtEntry(ctypes.Structure):
    """struct ct_entry."""

    _fields_ = [
        ("tx_packets", c_uint64),
        ("tx_bytes", c_uint64),
        ("rx_packets", c_uint64),
        ("rx_bytes", c_uint64),
        ("lifetime", c_uint32),
        ("src_identity", c_uint32),
        ("flags", c_uint16),
        ("tx_flags_seen", c_uint8),
        ("rx_flags_seen", c_uint8),
        ("tx_last_report", c_uint32),
        ("rx_last_report", c_uint32),
        ("rev_nat_index", c_uint16),
        ("proxy_port", c_uint16),  # host order; the connection goes through this L7 proxy port (bpf/lib/proxy.h)
        ("backend_id", c_uint32),
        ("pad2", c_uint32),
    ]


def _address(value: int) -> str:
    return str(ipaddress.IPv4Address(struct.pack("=I", value)))


def _port(value: int) -> int:
    return struct.unpack("!H", struct.pack("=H", value))[0]


@dataclass(frozen=True)
class CtRow:
    """One tracked connection, as seen where it was first checked."""

    protocol: int
    direction: int  # CT_INGRESS or CT_EGRESS
    saddr: str
    sport: int  # ICMP echo: the identifier
    daddr: str
    dport: int
    expires_in: int  # seconds left (<= 0: expired, kept until reused or evicted)
    tx_packets: int
    tx_bytes: int
    rx_packets: int
    rx_bytes: int
    tx_flags_seen: int
    rx_flags_seen: int
    flags: int
    src_identity: int
    proxy_port: int = 0

    @property
    def closing(self) -> bool:
        return self.flags & (CT_F_TX_CLOSING | CT_F_RX_CLOSING) == CT_F_TX_CLOSING | CT_F_RX_CLOSING

    def describe(self) -> str:
        """A ``cilium-dbg bpf ct list global`` style line."""
        proto = PROTOCOLS.get(self.protocol, str(self.protocol))
        way = {CT_INGRESS: "IN", CT_SERVICE: "SVC"}.get(self.direction, "OUT")
        names = [name for bit, name in ((CT_F_TX_CLOSING, "TxClosing"), (CT_F_RX_CLOSING, "RxClosing"),
                                        (CT_F_SEEN_REPLY, "SeenReply"), (CT_F_HAIRPIN, "Hairpin"),
                                                          (CT_F_PROXY_UPSTREAM, "ProxyUpstream"))
                 if self.flags & bit]
        return (f"{proto} {way} {self.saddr}:{self.sport} -> {self.daddr}:{self.dport} expires={self.expires_in} "
                f"RxPackets={self.rx_packets} RxBytes={self.rx_bytes} RxFlagsSeen={self.rx_flags_seen:#04x} "
                f"TxPackets={self.tx_packets} TxBytes={self.tx_bytes} TxFlagsSeen={self.tx_flags_seen:#04x} "
                f"Flags={'|'.join(names) or '0'} SourceSecurityID={self.src_identity}"
                + (f" ProxyPort={self.proxy_port}" if self.proxy_port else ""))


def ct_row(key: CtKey, entry: CtEntry, now: int) -> CtRow:
    return CtRow(
        protocol=key.protocol, direction=key.direction, saddr=_address(key.saddr), sport=_port(key.sport),
        daddr=_address(key.daddr), dport=_port(key.dport), expires_in=entry.lifetime - now,
        tx_packets=entry.tx_packets, tx_bytes=entry.tx_bytes, rx_packets=entry.rx_packets, rx_bytes=entry.rx_bytes,
        tx_flags_seen=entry.tx_flags_seen, rx_flags_seen=entry.rx_flags_seen, flags=entry.flags,
        src_identity=entry.src_identity, proxy_port=entry.proxy_port,
    )


class ConntrackMap(PinnedMap):
    """``ConntrackMap.open(pin_dir)``: list (``rows()``) and flush tracked connections."""

    NAME = MAP_NAME
    MAP_TYPE = BPF_MAP_TYPE_LRU_HASH
    KEY = CtKey
    VALUE = CtEntry

    def _entries(self) -> list[tuple[CtKey, CtEntry]]:
        found: dict[bytes, tuple[CtKey, CtEntry]] = {}
        for key in map_keys(self.fd, CtKey, what=self.NAME):
            entry = CtEntry()
            if map_lookup(self.fd, key, entry, what=self.NAME):
                found[bytes(key)] = (key, entry)
        return list(found.values())

    def rows(self, include_expired: bool = False) -> list[CtRow]:
        """Tracked connections, sorted; expired ones only when asked."""
        now = int(time.monotonic())
        rows = [ct_row(key, entry, now) for key, entry in self._entries()]
        if not include_expired:
            rows = [row for row in rows if row.expires_in > 0]
        return sorted(rows, key=lambda r: (r.protocol, r.saddr, r.sport, r.daddr, r.dport, r.direction))

    def gc(self, now: int | None = None) -> int:
        """Remove the entries whose lifetime has passed (the agent's periodic collector); how many.

        The datapath already treats such an entry as absent and overwrites it on reuse; collecting
        frees its slot before the LRU has to evict a live one. Each entry is read again just before
        its delete, so one a packet revived in between is kept.
        """
        now = int(time.monotonic()) if now is None else now
        removed = 0
        for key, entry in self._entries():
            if entry.lifetime > now:
                continue
            again = CtEntry()
            if map_lookup(self.fd, key, again, what=self.NAME) and again.lifetime <= now:
                removed += map_delete(self.fd, key, what=self.NAME)
        return removed

    def flush(self) -> int:
        """Remove every entry (`cilium-dbg bpf ct flush`); returns how many were removed."""
        return sum(map_delete(self.fd, key, what=self.NAME) for key, _entry in self._entries())
