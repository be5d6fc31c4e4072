"""SelectorCache: selector -> the identities it matches, kept current incrementally.

Selectors are registered with a reference count (one per rule using them). Adding, relabelling or
removing an identity tests it against the registered selectors that could select it (a bucket index
by label narrows them) and reports which selectors' selections changed, so the caller recomputes only
the endpoints whose rules use those selectors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from membrane.policy.selector import IdentityLabels, Selector
from membrane.policy.selectorindex import BucketIndex


class SelectorCache:
    """Identities (number -> labels) and registered selectors with their current selections.

    Also the reverse, identity -> the registered selectors selecting it (:meth:`selected_by`), kept
    current by the same updates. A :class:`BucketIndex` narrows both directions to candidates, so a
    new selector is tested against the identities that could match it and a new identity against the
    selectors that could match it, not against all of them.
    """

    def __init__(self) -> None:
        self._identities: dict[int, IdentityLabels] = {}
        self._selections: dict[Selector, set[int]] = {}
        self._refs: dict[Selector, int] = {}
        self._selected_by: dict[int, set[Selector]] = {}
        self._index = BucketIndex()

    # identities -------------------------------------------------------------------------------
    def upsert_identity(self, identity: int, labels: Mapping[str, str]) -> set[Selector]:
        """Add an identity or replace its labels; returns the selectors whose selection changed."""
        prepared = IdentityLabels.of(labels)
        old = self._identities.get(identity)
        if old is not None:
            if old.labels == prepared.labels:
                return set()
            self._index.remove_identity(identity, old)
        self._identities[identity] = prepared
        self._index.add_identity(identity, prepared)
        before = self._selected_by.pop(identity, set())
        now = {sel for sel in self._index.candidate_selectors(prepared) if sel.matches(prepared)}
        if now:
            self._selected_by[identity] = now
        for sel in before - now:
            self._selections[sel].discard(identity)
        for sel in now - before:
            self._selections[sel].add(identity)
        return before ^ now

    def remove_identity(self, identity: int) -> set[Selector]:
        """Forget an identity; returns the selectors that had selected it."""
        old = self._identities.pop(identity, None)
        if old is None:
            return set()
        self._index.remove_identity(identity, old)
        changed = self._selected_by.pop(identity, set())
        for sel in changed:
            self._selections[sel].discard(identity)
        return changed

    def selected_by(self, identity: int) -> frozenset[Selector]:
        """The registered selectors that select ``identity`` (empty for an unknown identity)."""
        return frozenset(self._selected_by.get(identity, ()))

    def identities(self) -> dict[int, Mapping[str, str]]:
        return {i: lab.labels for i, lab in self._identities.items()}

    def labels(self, identity: int) -> Mapping[str, str] | None:
        found = self._identities.get(identity)
        return None if found is None else found.labels

    # selectors --------------------------------------------------------------------------------
    def add_selector(self, sel: Selector) -> frozenset[int]:
        """Register (or add a reference to) a selector; returns its selection."""
        self._ref(sel)
        return frozenset(self._selections[sel])

    def add_selectors(self, sels: Iterable[Selector]) -> None:
        for sel in sels:
            self._ref(sel)

    def _ref(self, sel: Selector) -> None:
        if sel not in self._selections:
            known = self._identities
            selected = {i for i in self._index.add_selector(sel) if sel.matches(known[i])}
            self._selections[sel] = selected
            for i in selected:
                self._selected_by.setdefault(i, set()).add(sel)
        self._refs[sel] = self._refs.get(sel, 0) + 1

    def remove_selector(self, sel: Selector) -> None:
        """Drop one reference; the selector is forgotten when none remain."""
        refs = self._refs.get(sel, 0) - 1
        if refs > 0:
            self._refs[sel] = refs
        elif sel in self._refs:
            del self._refs[sel]
            self._index.remove_selector(sel)
            for i in self._selections.pop(sel):
                users = self._selected_by[i]
                users.discard(sel)
                if not users:
                    del self._selected_by[i]

    def remove_selectors(self, sels: Iterable[Selector]) -> None:
        for sel in sels:
            self.remove_selector(sel)

    def selections(self, sel: Selector) -> frozenset[int]:
        """The identities ``sel`` matches (computed on the spot if it is not registered)."""
        found = self._selections.get(sel)
        if found is not None:
            return frozenset(found)
        known = self._identities
        return frozenset(i for i in self._index.candidate_identities(self._index.best_anchor(sel))
                         if sel.matches(known[i]))

    def is_registered(self, sel: Selector) -> bool:
        return sel in self._selections

    def __len__(self) -> int:
        return len(self._selections)

    def selects(self, sel: Selector, identity: int) -> bool:
        """Whether ``sel`` matches ``identity`` (False for an unknown identity)."""
        found = self._selections.get(sel)
        if found is not None:
            return identity in found
        labels = self._identities.get(identity)
        return labels is not None and sel.matches(labels)
