"""CiliumLoadBalancerIPPools as address ranges: usable addresses, counts, and conflicts between pools.

A ``{cidr}`` block loses its first and last address when ``allowFirstLastIPs: No`` (except /31, /32,
/127, /128); a ``{start, stop}`` range never reserves any. Pools that overlap another pool are
*conflicting*: the newer one (by creationTimestamp, then name) is marked and allocates nothing, as
Cilium does; its existing allocations stay until their Services go.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from membrane.model.ippool import block_range
from membrane.model.labels import LabelSelector
from membrane.model.service import service_selector_labels

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Block:
    text: str  # as written: "10.0.10.0/24" or "20.0.20.100-20.0.20.200"
    first: int  # first usable address (as an integer)
    last: int  # last usable address
    version: int

    @property
    def size(self) -> int:
        return max(0, self.last - self.first + 1)

    def contains(self, ip: Address) -> bool:
        return ip.version == self.version and self.first <= int(ip) <= self.last

    def addresses(self) -> Iterator[Address]:
        for value in range(self.first, self.last + 1):
            yield ipaddress.ip_address(value) if self.version == 4 else ipaddress.IPv6Address(value)

    def overlaps(self, other: Block) -> bool:
        return self.version == other.version and self.first <= other.last and other.first <= self.last


@dataclass
class Pool:
    name: str
    created: str
    blocks: list[Block]
    raw_blocks: list[Block]  # whole blocks (reserved addresses included), for conflict checks
    selector: LabelSelector | None
    disabled: bool
    generation: int = 1
    conflict: str = ""  # why it conflicts ("" = it does not)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(b.size for b in self.blocks)

    def contains(self, ip: Address) -> bool:
        return any(b.contains(ip) for b in self.blocks)

    def selects(self, service: dict[str, Any]) -> bool:
        if self.selector is None:
            return True
        return self.selector.matches(service_selector_labels(service))

    @property
    def allocates(self) -> bool:
        """Whether new addresses may come from it."""
        return not self.disabled and not self.conflict


def _block(raw: dict[str, Any], allow_first_last: bool) -> tuple[Block, Block]:
    lo, hi = block_range(raw)
    if "cidr" in raw:
        net = ipaddress.ip_network(raw["cidr"], strict=False)
        text = str(net)
        tiny = net.prefixlen >= net.max_prefixlen - 1
        first, last = int(lo), int(hi)
        whole = Block(text, first, last, lo.version)
        if not allow_first_last and not tiny:
            first, last = first + 1, last - 1
        return Block(text, first, last, lo.version), whole
    text = f"{lo}-{hi}" if lo != hi else str(lo)
    whole = Block(text, int(lo), int(hi), lo.version)
    return whole, whole


def parse_pool(obj: dict[str, Any]) -> Pool:
    """A validated pool object as a Pool (validation: membrane.model.ippool)."""
    spec = obj.get("spec") or {}
    meta = obj.get("metadata") or {}
    allow = str(spec.get("allowFirstLastIPs") or "Yes").lower() != "no"
    pairs = [_block(b, allow) for b in spec.get("blocks") or []]
    selector = spec.get("serviceSelector")
    return Pool(
        name=str(meta.get("name")),
        created=str(meta.get("creationTimestamp") or ""),
        blocks=[p[0] for p in pairs],
        raw_blocks=[p[1] for p in pairs],
        selector=LabelSelector.from_dict(selector, "spec.serviceSelector") if selector is not None else None,
        disabled=spec.get("disabled") is True,
        generation=int(meta.get("generation") or 1),
    )


def mark_conflicts(pools: Sequence[Pool]) -> list[Pool]:
    """Pools sorted by age (creationTimestamp, name), each newer pool overlapping an older
    non-conflicting one marked with Cilium's message. Returns the sorted list."""
    ordered = sorted(pools, key=lambda p: (p.created, p.name))
    kept: list[Pool] = []
    for pool in ordered:
        pool.conflict = ""
        for older in kept:
            hit = next(((mine, theirs) for mine in pool.raw_blocks for theirs in older.raw_blocks
                        if mine.overlaps(theirs)), None)
            if hit is not None:
                pool.conflict = (f"Pool conflicts since CIDR '{hit[0].text}' overlaps CIDR '{hit[1].text}' "
                                 f"from IP Pool '{older.name}'")
                break
        if not pool.conflict:
            kept.append(pool)
    return ordered
