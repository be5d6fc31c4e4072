"""One node per Service: what a candidate does with a Service's lease, given who holds it now.

The lease is a key with a holder that vanishes when its holder stops renewing (an etcd lease of
``leaseDuration``). Each round a candidate looks at every Service it could announce:

* held by this node under its current etcd lease: keep announcing;
* held by this node under an older etcd lease (the agent restarted): take it over in place;
* free: try to create it (first come, first served); the winner announces and sends gratuitous ARP;
* held by another node: do not announce;
* no longer a candidate but holding it: release (delete) so another node takes over at once.

If the holder could not renew within ``renewDeadline`` it stops announcing before the lease runs out,
so two nodes never answer for long. Pure: the agent does the reads and writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Action(Enum):
    KEEP = "keep"
    ACQUIRE = "acquire"  # create the absent lease
    TAKE_OVER = "take-over"  # ours from an older etcd lease: rewrite under the current one
    RELEASE = "release"
    FOLLOW = "follow"  # another node holds it


@dataclass(frozen=True)
class Holder:
    node: str
    etcd_lease: int


def decide(me: str, my_lease: int, candidate: bool, holder: Holder | None) -> Action | None:
    """What to do with one Service's lease (None: nothing, not ours and not a candidate)."""
    if not candidate:
        return Action.RELEASE if holder is not None and holder.node == me else None
    if holder is None:
        return Action.ACQUIRE
    if holder.node != me:
        return Action.FOLLOW
    return Action.KEEP if holder.etcd_lease == my_lease else Action.TAKE_OVER


def renewal_ok(now: float, last_renewal: float, renew_deadline: float) -> bool:
    """Whether the holder may still announce: it renewed within the deadline."""
    return last_renewal > 0 and now - last_renewal <= renew_deadline
