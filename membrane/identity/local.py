"""Node-local identities for CIDR prefixes (cilium-semantics §1.4, §1.7): ``1<<24 | n``, never on the wire.

A prefix used by a policy gets the labels ``cidr:<prefix>`` and ``reserved:world``; the numbers are
handed out lowest-free per node and reference-counted, so the same prefix keeps its number for as long
as some policy uses it. ``0.0.0.0/0`` and ``::/0`` are the world itself (2, or 9/10 in dual-stack).
"""

from __future__ import annotations

import ipaddress

from membrane.identity.labels import SOURCE_RESERVED, Label, LabelSet, cidr_label, cidr_label_key
from membrane.identity.reserved import MAX_LOCAL_IDENTITY, MIN_LOCAL_IDENTITY, ReservedIdentity


def normalize_prefix(prefix: str) -> str:
    """``10.1.2.3/8`` -> ``10.0.0.0/8``; a bare address becomes a host prefix."""
    try:
        return str(ipaddress.ip_network(prefix.strip(), strict=False))
    except ValueError as err:
        raise ValueError(f"invalid CIDR {prefix!r}: {err}") from None


def cidr_labels(prefix: str) -> LabelSet:
    """``cidr:<prefix>`` + ``reserved:world`` (IPv6 colons as ``-`` in the key)."""
    return LabelSet([cidr_label(prefix), Label(SOURCE_RESERVED, "world")])


def world_identity(prefix: str, dual_stack: bool = False) -> int | None:
    """The reserved world identity of ``0.0.0.0/0`` / ``::/0``; None for any other prefix."""
    net = ipaddress.ip_network(prefix, strict=False)
    if net.prefixlen != 0:
        return None
    if not dual_stack:
        return int(ReservedIdentity.WORLD)
    return int(ReservedIdentity.WORLD_IPV4 if net.version == 4 else ReservedIdentity.WORLD_IPV6)


class LocalIdentityAllocator:
    """Per-node CIDR identities: ``allocate(prefix)`` / ``release(prefix)`` with reference counts."""

    def __init__(self, dual_stack: bool = False,
                 min_id: int = MIN_LOCAL_IDENTITY, max_id: int = MAX_LOCAL_IDENTITY) -> None:
        if not MIN_LOCAL_IDENTITY <= min_id <= max_id <= MAX_LOCAL_IDENTITY:
            raise ValueError(f"local identity range {min_id}..{max_id} is outside "
                             f"{MIN_LOCAL_IDENTITY}..{MAX_LOCAL_IDENTITY}")
        self._dual_stack = dual_stack
        self._min = min_id
        self._max = max_id
        self._by_prefix: dict[str, int] = {}
        self._labels: dict[int, LabelSet] = {}
        self._refs: dict[int, int] = {}
        self._next_hint = min_id

    def cidr_identity(self, prefix: str) -> int:
        """The identity of ``prefix`` (allocating and taking a reference)."""
        return self.allocate(prefix)

    def allocate(self, prefix: str) -> int:
        norm = normalize_prefix(prefix)
        world = world_identity(norm, self._dual_stack)
        if world is not None:
            return world
        n = self._by_prefix.get(norm)
        if n is None:
            n = self._lowest_free()
            self._by_prefix[norm] = n
            self._labels[n] = cidr_labels(norm)
            self._refs[n] = 0
        self._refs[n] += 1
        return n

    def _lowest_free(self) -> int:
        n = self._next_hint
        while n <= self._max:
            if n not in self._labels:
                self._next_hint = n + 1
                return n
            n += 1
        raise OverflowError(f"no free local identity in {self._min}..{self._max}")

    def lookup(self, prefix: str) -> int | None:
        norm = normalize_prefix(prefix)
        world = world_identity(norm, self._dual_stack)
        return world if world is not None else self._by_prefix.get(norm)

    def release(self, prefix: str) -> bool:
        """Drop one reference; True when that freed the identity."""
        norm = normalize_prefix(prefix)
        n = self._by_prefix.get(norm)
        if n is None:
            return False
        self._refs[n] -= 1
        if self._refs[n] > 0:
            return False
        del self._by_prefix[norm], self._labels[n], self._refs[n]
        self._next_hint = min(self._next_hint, n)
        return True

    def labels(self, identity: int) -> LabelSet | None:
        return self._labels.get(identity)

    def identities(self) -> dict[int, LabelSet]:
        """Every live local identity with its labels (for the selector cache and ``identity list``)."""
        return dict(self._labels)

    def prefixes(self) -> dict[str, int]:
        """prefix -> identity (the CIDR source of the ipcache)."""
        return dict(self._by_prefix)


def cidr_of(labels: LabelSet) -> str | None:
    """The most specific ``cidr:`` prefix of a label set (what ``identity list`` prints), or None."""
    best: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    for lbl in labels:
        if lbl.source != "cidr":
            continue
        net = ipaddress.ip_network(lbl.key.replace("-", ":"), strict=False)
        if best is None or net.prefixlen > best.prefixlen:
            best = net
    return cidr_label_key(str(best)) if best is not None else None
