"""Which identities the operator may delete: unused by every node *and* every endpoint, for a grace period.

An identity is in use while any node holds a reference (``refs/<n>/<node>``) or any published
ipcache entry (a running endpoint somewhere) carries it. Agent liveness plays no part: a dead
agent's endpoints keep running and keep their ipcache entries, so their identities stay.

An identity unused in one GC round is only *marked*; it is deleted when it is still unused at least
``grace`` seconds after it was first seen unused (Cilium's kvstore allocator likewise deletes a key
only if it was already stale in the previous round). Anything that uses it again in between clears
the mark. Pure: the operator feeds the numbers and keeps the returned marks for the next round.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

IDENTITY_GC_GRACE = 30.0  # seconds an identity must stay unused before it is deleted


@dataclass(frozen=True)
class GCDecision:
    delete: frozenset[int]
    marks: dict[int, float]  # identity -> when it was first seen unused (carried to the next round)


def identity_gc(allocated: Iterable[int], referenced: Iterable[int], in_use: Iterable[int],
                marks: Mapping[int, float], now: float, grace: float = IDENTITY_GC_GRACE) -> GCDecision:
    """Identities to delete now, and the unused-since marks of those that must wait longer."""
    unused = set(allocated) - set(referenced) - set(in_use)
    since = {n: marks.get(n, now) for n in unused}
    delete = frozenset(n for n, t in since.items() if now - t >= grace)
    return GCDecision(delete, {n: t for n, t in since.items() if n not in delete})
