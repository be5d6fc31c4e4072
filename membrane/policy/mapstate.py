"""Map-ready policy entries and the verdict the datapath derives from them.

An entry is a prefix over (identity, direction, protocol, port): ``identity`` 0 = any peer;
``protocol`` 0 = every protocol and port; otherwise the top ``port_prefix_len`` bits of ``port``
must match (0 = any port, 16 = exactly ``port``; ranges become several prefixes). ICMP entries
carry the ICMP type in ``port``.

Datapath contract (what :func:`verdict` emulates): per packet, look up the longest matching entry
for the peer's identity and, separately, for identity 0; if either is a deny the packet is dropped
with 181, else if either is an allow it passes, else it is dropped with 133 when the direction is
enforced (passes otherwise). :func:`normalize` removes allows nested inside a deny of the same
identity so that a longest-prefix lookup never lets a narrower allow shadow a broader deny.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from membrane.model.datapath_codes import DROP_POLICY, DROP_POLICY_DENY
from membrane.policy.l7 import L7Entry

PROTO_ANY, PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6, PROTO_SCTP = 0, 1, 6, 17, 58, 132
PROTOCOL_NUMBERS = {"TCP": PROTO_TCP, "UDP": PROTO_UDP, "SCTP": PROTO_SCTP, "ICMP": PROTO_ICMP, "ICMPV6": PROTO_ICMPV6}
ANY_PORT_PROTOCOLS = (PROTO_TCP, PROTO_UDP, PROTO_SCTP)  # what protocol ANY with a port expands to
REASON_POLICY_DENIED = DROP_POLICY  # nothing allowed it (default deny)
REASON_POLICY_DENY = DROP_POLICY_DENY  # an explicit deny rule
ALLOW, DENY, DEFAULT_DENY = "allow", "deny", "default-deny"


@dataclass(frozen=True, order=True)
class PolicyEntry:
    identity: int
    direction: str  # ingress | egress
    protocol: int
    port: int = 0
    port_prefix_len: int = 0
    deny: bool = False

    def covers(self, protocol: int, port: int) -> bool:
        if self.protocol == PROTO_ANY:
            return True
        if protocol != self.protocol:
            return False
        shift = 16 - self.port_prefix_len
        return (port >> shift) == (self.port >> shift)

    def contains(self, other: PolicyEntry) -> bool:
        """Whether every packet ``other`` matches is matched by ``self`` (same identity and direction)."""
        if self.protocol == PROTO_ANY:
            return True
        return (
            other.protocol == self.protocol
            and other.port_prefix_len >= self.port_prefix_len
            and self.covers(other.protocol, other.port)
        )

    @property
    def specificity(self) -> tuple[bool, int]:
        return (self.protocol != PROTO_ANY, self.port_prefix_len)

    @property
    def port_range(self) -> tuple[int, int]:
        if self.protocol == PROTO_ANY or self.port_prefix_len == 0:
            return (0, 65535)
        size = 1 << (16 - self.port_prefix_len)
        return (self.port, self.port + size - 1)


def port_range_prefixes(start: int, end: int) -> list[tuple[int, int]]:
    """The (port, prefix length) masks covering ``start``..``end`` exactly (0 = any port)."""
    if start == 0:
        return [(0, 0)]
    end = max(start, min(end, 65535))
    out = []
    while start <= end:
        size = start & -start if start else 1 << 16
        while size > end - start + 1:
            size >>= 1
        out.append((start, 16 - size.bit_length() + 1))
        start += size
    return out


def normalize(entries: Iterable[PolicyEntry]) -> frozenset[PolicyEntry]:
    """Drop allows contained in a deny for the same identity and direction (deny wins)."""
    entries = set(entries)
    denies: dict[tuple[int, str], list[PolicyEntry]] = {}
    for e in entries:
        if e.deny:
            denies.setdefault((e.identity, e.direction), []).append(e)
    return frozenset(
        e for e in entries
        if e.deny or not any(d.contains(e) for d in denies.get((e.identity, e.direction), ()))
    )


@dataclass(frozen=True)
class ResolvedPolicy:
    """An endpoint's policy: per-direction enforcement and its map entries."""

    ingress_enforced: bool
    egress_enforced: bool
    entries: frozenset[PolicyEntry] = frozenset()
    l7: frozenset[L7Entry] = frozenset()  # redirected ports and their L7 rules (membrane.policy.l7)
    _index: dict[tuple[int, str], list[PolicyEntry]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[tuple[int, str], list[PolicyEntry]] = {}
        for e in self.entries:
            index.setdefault((e.identity, e.direction), []).append(e)
        object.__setattr__(self, "_index", index)

    def enforced(self, direction: str) -> bool:
        return self.ingress_enforced if direction == "ingress" else self.egress_enforced

    def lookup(self, identity: int, direction: str, protocol: int, port: int) -> PolicyEntry | None:
        """The longest entry for exactly this identity (0 = the any-peer entries) that matches."""
        best: PolicyEntry | None = None
        for e in self._index.get((identity, direction), ()):
            if e.covers(protocol, port) and (best is None or e.specificity > best.specificity):
                best = e
        return best

    def entries_for(self, direction: str) -> list[PolicyEntry]:
        return sorted(e for e in self.entries if e.direction == direction)


def verdict(
    resolved: ResolvedPolicy, peer_identity: int, protocol: int, port: int, direction: str = "ingress"
) -> tuple[str, int]:
    """("allow" | "deny" | "default-deny", drop reason 0 / 181 / 133) exactly as the datapath decides."""
    found = [resolved.lookup(i, direction, protocol, port) for i in dict.fromkeys((peer_identity, 0))]
    hits = [e for e in found if e is not None]
    if any(e.deny for e in hits):
        return DENY, REASON_POLICY_DENY
    if hits or not resolved.enforced(direction):
        return ALLOW, 0
    return DEFAULT_DENY, REASON_POLICY_DENIED
