"""One node's use of cluster identities: local reference counts over the allocator's per-node reference.

Several endpoints of a node may share an identity; the store holds one ``refs/<n>/<node>`` key for
them all. ``acquire`` allocates (or references) on the first local use, ``release`` drops the store
reference when the last local user goes. Relabelling an endpoint is ``acquire(new)`` then
``release(old)``, so the old identity stays referenced until the new one is in place.
"""

from __future__ import annotations

from membrane.identity.allocator import IdentityAllocator
from membrane.identity.labels import LabelSet
from membrane.identity.reserved import is_reserved


class NodeIdentities:
    """Reference-counted identities of one node (not thread-safe: one owner, the agent's identity loop)."""

    def __init__(self, allocator: IdentityAllocator, node: str, lease: int = 0) -> None:
        self._alloc = allocator
        self._node = node
        self._lease = lease
        self._counts: dict[int, int] = {}
        self._labels: dict[int, LabelSet] = {}
        self._by_labels: dict[LabelSet, int] = {}

    @property
    def node(self) -> str:
        return self._node

    def acquire(self, labels: LabelSet) -> int:
        """The identity of ``labels``, counted as used once more on this node."""
        n = self._by_labels.get(labels)
        if n is None:
            n = self._alloc.allocate(self._node, labels, self._lease)
            if is_reserved(n):
                return n
            self._by_labels[labels] = n
            self._labels[n] = labels
        self._counts[n] = self._counts.get(n, 0) + 1
        return n

    def release(self, identity: int) -> bool:
        """One use fewer; True when this was the last one and the store reference was dropped."""
        count = self._counts.get(identity, 0)
        if count == 0:
            return False
        if count > 1:
            self._counts[identity] = count - 1
            return False
        del self._counts[identity], self._by_labels[self._labels.pop(identity)]
        self._alloc.release(self._node, identity)
        return True

    def count(self, identity: int) -> int:
        return self._counts.get(identity, 0)

    def identities(self) -> dict[int, LabelSet]:
        """The identities this node uses, with their labels (``identity list --endpoints``)."""
        return dict(self._labels)

    def restore(self, lease: int) -> None:
        """After a new lease (agent restart, lease lost): re-write every reference under it."""
        self._lease = lease
        for labels in list(self._labels.values()):
            self._alloc.allocate(self._node, labels, lease)
