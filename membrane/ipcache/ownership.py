"""Who may withdraw a published ipcache entry, and when: its owner, or nobody until a long lease ends.

An agent publishes ``ipcache/<ip>/32`` for each of its endpoints under its *endpoint lease*, which
lives far longer than the node's liveness lease (Cilium: kvstore leases of 15 minutes against a
heartbeat of seconds). So an agent that dies or restarts withdraws nothing: its pods keep running,
and every other node keeps mapping their IPs to their identities. Withdrawal happens when

* the owner deletes an endpoint (CNI DEL) — at once;
* the owner restarts and finds entries it published before that match no endpoint it still has
  (``stale_owned``) — at its first sync;
* the owner never comes back — when its endpoint lease runs out (``ENDPOINT_LEASE_TTL``), the grace
  before withdrawal;
* the owner's Node object is deleted — the operator withdraws what that node owned
  (``orphaned_by_node``).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping

ENDPOINT_LEASE_TTL = 900  # seconds: the grace before a silent agent's ipcache entries and identity refs go


def owner_of(value: str | bytes) -> str:
    """The ``node`` field of a stored ipcache value ("" if absent or unreadable)."""
    try:
        data = json.loads(value)
    except ValueError:
        return ""
    node = data.get("node") if isinstance(data, dict) else None
    return node if isinstance(node, str) else ""


def stale_owned(stored: Mapping[str, str | bytes], owner: str, wanted: Collection[str]) -> list[str]:
    """Keys ``owner`` published earlier (another incarnation of it) that it no longer wants."""
    return sorted(k for k, v in stored.items() if k not in wanted and owner_of(v) == owner)


def orphaned_by_node(stored: Mapping[str, str | bytes], nodes: Iterable[str]) -> list[str]:
    """Keys owned by a node that no longer exists (entries without an owner are left alone)."""
    known = set(nodes)
    return sorted(k for k, v in stored.items() if (o := owner_of(v)) and o not in known)


def identities_in_use(stored: Iterable[str | bytes]) -> set[int]:
    """The identities carried by published ipcache entries: endpoints that exist somewhere."""
    used = set()
    for value in stored:
        try:
            data = json.loads(value)
        except ValueError:
            continue
        ident = data.get("identity") if isinstance(data, dict) else None
        if isinstance(ident, int) and not isinstance(ident, bool):
            used.add(ident)
    return used
