"""mb_policy: L3/L4 policy of every local endpoint (bpf/lib/maps.h struct policy_key/_entry).

A :class:`PolicyRule` says "endpoint E, direction D, peer identity I (0 = any), protocol P
(0 = any), destination ports N..M (0 = any): allow or deny". The map holds *slots*: a port range
is written as the aligned prefix blocks that cover it exactly (``port_blocks``), each one key
with ``port_prefix`` significant bits. The datapath (bpf/lib/policy.h) probes every prefix
length of the packet's port, for the peer's identity and for any identity, then any protocol:
a deny in any matching slot wins (drop 181), else an allow passes, else drop 133. ICMP rules
use the ICMP type as the port (8 = echo request).
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Iterable
from ctypes import c_uint8, c_uint16, c_uint32, c_uint64
from dataclasses import dataclass
from typing import NamedTuple

from membrane.datapath.bpf.syscalls import map_delete, map_keys, map_lookup, map_update
from membrane.datapath.maps.pinned import BPF_MAP_TYPE_HASH, PinnedMap
from membrane.model.errors import ValidationError

MAP_NAME = "mb_policy"
DIR_INGRESS = 1  # the endpoint receives (METRIC_INGRESS)
DIR_EGRESS = 2  # the endpoint sends (METRIC_EGRESS)
IDENTITY_ANY = 0
PROTO_ANY = 0
POLICY_F_DENY = 1 << 0
PORT_BITS = 16


class PolicyKey(ctypes.Structure):
    """struct policy_key (dport in network byte order)."""

    _fields_ = [
        ("ep_id", c_uint16),
        ("direction", c_uint8),
        ("protocol", c_uint8),
        ("sec_identity", c_uint32),
        ("dport", c_uint16),
        ("port_prefix", c_uint8),
        ("pad", c_uint8),
    ]


class PolicyValue(ctypes.Structure):
    """struct policy_entry (proxy_port in network byte order)."""

    _fields_ = [
        ("flags", c_uint8),
        ("pad1", c_uint8),
        ("proxy_port", c_uint16),
        ("pad2", c_uint32),
        ("packets", c_uint64),
        ("bytes", c_uint64),
    ]


class PolicySlot(NamedTuple):
    """One map key: ``port`` (host order) has ``port_prefix`` significant leading bits."""

    ep_id: int
    direction: int
    identity: int
    protocol: int
    port: int
    port_prefix: int

    def to_c(self) -> PolicyKey:
        return PolicyKey(ep_id=self.ep_id, direction=self.direction, protocol=self.protocol,
                         sec_identity=self.identity, dport=_htons(self.port), port_prefix=self.port_prefix)

    @classmethod
    def from_c(cls, key: PolicyKey) -> PolicySlot:
        return cls(key.ep_id, key.direction, key.sec_identity, key.protocol, _htons(key.dport), key.port_prefix)

    @property
    def port_range(self) -> tuple[int, int]:
        """(first, last) port the slot covers; (0, 65535) for any port."""
        return self.port, self.port + (1 << (PORT_BITS - self.port_prefix)) - 1


class Verdict(NamedTuple):
    deny: bool = False
    proxy_port: int = 0


class SlotState(NamedTuple):
    """A slot as read back: its verdict and the new connections it decided."""

    verdict: Verdict
    packets: int
    bytes: int


class SyncResult(NamedTuple):
    added: int
    changed: int
    removed: int


def _htons(value: int) -> int:
    return ((value & 0xFF) << 8) | (value >> 8)


def _uint(value: object, bits: int, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < (1 << bits):
        raise ValidationError(f"{field} {value!r}: must be an integer in 0..{(1 << bits) - 1}", "policy rule")
    return value


def port_blocks(first: int, last: int) -> list[tuple[int, int]]:
    """The fewest aligned (port, prefix bits) blocks covering first..last exactly (at most 30)."""
    if not 0 <= first <= last <= 0xFFFF:
        raise ValidationError(f"port range {first}-{last}: need 0 <= first <= last <= 65535", "policy rule")
    blocks = []
    port = first
    while port <= last:
        size_bits = (port & -port).bit_length() - 1 if port else PORT_BITS  # alignment of port
        while port + (1 << size_bits) - 1 > last:
            size_bits -= 1
        blocks.append((port, PORT_BITS - size_bits))
        port += 1 << size_bits
    return blocks


@dataclass(frozen=True)
class PolicyRule:
    """Allow (or deny) connections of endpoint ``ep_id`` in ``direction`` with peers of
    ``identity`` (0 = any), over ``protocol`` (0 = any; ports must then be 0) to ports
    ``port``..``end_port`` (``port`` 0 = any port; ``end_port`` 0 = just ``port``)."""

    ep_id: int
    direction: int
    identity: int = IDENTITY_ANY
    protocol: int = PROTO_ANY
    port: int = 0
    end_port: int = 0
    deny: bool = False
    proxy_port: int = 0

    def __post_init__(self) -> None:
        _uint(self.ep_id, 16, "ep_id")
        if self.direction not in (DIR_INGRESS, DIR_EGRESS):
            raise ValidationError(f"direction {self.direction!r}: must be {DIR_INGRESS} (ingress) or "
                                  f"{DIR_EGRESS} (egress)", "policy rule")
        _uint(self.identity, 32, "identity")
        _uint(self.protocol, 8, "protocol")
        _uint(self.port, 16, "port")
        _uint(self.end_port, 16, "end_port")
        _uint(self.proxy_port, 16, "proxy_port")
        if self.protocol == PROTO_ANY and (self.port or self.end_port):
            raise ValidationError("ports need a protocol (protocol 0 means any protocol, any port)", "policy rule")
        if self.end_port and self.end_port < self.port:
            raise ValidationError(f"end_port {self.end_port} is below port {self.port}", "policy rule")

    def slots(self) -> list[PolicySlot]:
        base = (self.ep_id, self.direction, self.identity, self.protocol)
        if self.protocol == PROTO_ANY or (self.port == 0 and self.end_port in (0, 0xFFFF)):
            return [PolicySlot(*base, 0, 0)]
        last = self.end_port or self.port
        return [PolicySlot(*base, port, bits) for port, bits in port_blocks(self.port, last)]

    @property
    def verdict(self) -> Verdict:
        return Verdict(self.deny, self.proxy_port)


def desired_slots(rules: Iterable[PolicyRule]) -> dict[PolicySlot, Verdict]:
    """Every slot the rules need; where rules share a slot a deny wins, else the first proxy
    port seen."""
    slots: dict[PolicySlot, Verdict] = {}
    for rule in rules:
        for slot in rule.slots():
            have = slots.get(slot)
            if have is None or (rule.deny and not have.deny):
                slots[slot] = rule.verdict
    return slots


def plan_sync(current: dict[PolicySlot, Verdict], desired: dict[PolicySlot, Verdict],
              ep_ids: Iterable[int] | None = None) -> tuple[dict[PolicySlot, Verdict], dict[PolicySlot, Verdict], list[PolicySlot]]:
    """(slots to add, slots whose verdict changes, slots to remove). With ``ep_ids`` only the
    current slots of those endpoints are candidates for removal."""
    scope = None if ep_ids is None else set(ep_ids)
    added = {slot: v for slot, v in desired.items() if slot not in current}
    changed = {slot: v for slot, v in desired.items() if slot in current and current[slot] != v}
    removed = [slot for slot in current if slot not in desired and (scope is None or slot.ep_id in scope)]
    return added, changed, sorted(removed)


class PolicyMap(PinnedMap):
    """``PolicyMap.open(pin_dir)``: the policy slots of every local endpoint."""

    NAME = MAP_NAME
    MAP_TYPE = BPF_MAP_TYPE_HASH
    KEY = PolicyKey
    VALUE = PolicyValue

    # What ``sync`` last left in the map (slot -> verdict), so the next sync diffs against it instead of
    # reading every slot back (two syscalls per slot: ~1 s for 30 000 slots). It is dropped, and the map
    # read again, when older than RESYNC_SECONDS or when ``sync(reread=True)`` asks: that repairs what
    # other writers changed meanwhile.
    RESYNC_SECONDS = 300.0
    _shadow: dict[PolicySlot, Verdict] | None = None
    _shadow_at = 0.0

    def shadow_age(self) -> float:
        """Seconds since the map was last read back (infinite before the first sync)."""
        return float("inf") if self._shadow is None else time.monotonic() - self._shadow_at

    def _write(self, slot: PolicySlot, verdict: Verdict) -> None:
        value = PolicyValue(flags=POLICY_F_DENY if verdict.deny else 0, proxy_port=_htons(verdict.proxy_port))
        map_update(self.fd, slot.to_c(), value, what=f"{self.NAME} {slot}")
        if self._shadow is not None:
            self._shadow[slot] = verdict

    def _delete(self, slot: PolicySlot) -> bool:
        if self._shadow is not None:
            self._shadow.pop(slot, None)
        return map_delete(self.fd, slot.to_c(), what=f"{self.NAME} {slot}")

    def write_slot(self, slot: PolicySlot, verdict: Verdict) -> None:
        """Insert or replace one slot (its counters restart)."""
        self._write(slot, verdict)

    def delete_slot(self, slot: PolicySlot) -> bool:
        """Remove one slot; False if it was not there."""
        return self._delete(slot)

    def update(self, rule: PolicyRule) -> None:
        """Write the rule's slots (replacing their verdicts, resetting their counters)."""
        for slot in rule.slots():
            self._write(slot, rule.verdict)

    def delete(self, rule: PolicyRule) -> int:
        """Remove the rule's slots; returns how many were there."""
        return sum(self._delete(slot) for slot in rule.slots())

    def items(self) -> dict[PolicySlot, SlotState]:
        """Every slot with its verdict and counters (slots deleted meanwhile are left out)."""
        found: dict[PolicySlot, SlotState] = {}
        for key in map_keys(self.fd, PolicyKey, what=self.NAME):
            value = PolicyValue()
            if map_lookup(self.fd, key, value, what=self.NAME):
                verdict = Verdict(bool(value.flags & POLICY_F_DENY), _htons(value.proxy_port))
                found[PolicySlot.from_c(key)] = SlotState(verdict, value.packets, value.bytes)
        return dict(sorted(found.items()))

    def sync(self, rules: Iterable[PolicyRule], ep_ids: Iterable[int] | None = None, *,
             reread: bool | None = None) -> SyncResult:
        """Make the map hold exactly the rules' slots (only for ``ep_ids`` when given), writing
        only differences: additions and changes first, then removals, so a connection that
        stays allowed is never refused in between. Unchanged slots keep their counters. The
        differences are taken against what this object last synced; ``reread=True`` reads the
        map first, ``None`` does when that is older than RESYNC_SECONDS, ``False`` only if there
        is nothing to diff against."""
        now = time.monotonic()
        stale = now - self._shadow_at > self.RESYNC_SECONDS if reread is None else reread
        if self._shadow is None or stale:
            self._shadow = None  # a failure while reading leaves no half-read shadow behind
            current = {slot: state.verdict for slot, state in self.items().items()}
            self._shadow, self._shadow_at = current, now
        added, changed, removed = plan_sync(self._shadow, desired_slots(rules), ep_ids)
        try:
            for slot, verdict in (added | changed).items():
                self._write(slot, verdict)
            for slot in removed:
                self._delete(slot)
        except BaseException:
            self._shadow = None  # the map is between states: read it back next time
            raise
        return SyncResult(len(added), len(changed), len(removed))
