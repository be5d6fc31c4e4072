"""SelectorCache: selector -> the identities it matches, kept current incrementally.

Selectors are registered with a reference count (one per rule using them). Adding, relabelling or
removing an identity tests it against every registered selector once and reports which selectors'
selections changed, so the caller recomputes only the endpoints whose rules use those selectors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from membrane.policy.selector import IdentityLabels, Selector


class SelectorCache:
    """Identities (number -> labels) and registered selectors with their current selections."""

    def __init__(self) -> None:
        self._identities: dict[int, IdentityLabels] = {}
        self._selections: dict[Selector, set[int]] = {}
        self._refs: dict[Selector, int] = {}

    # identities -------------------------------------------------------------------------------
    def upsert_identity(self, identity: int, labels: Mapping[str, str]) -> set[Selector]:
        """Add an identity or replace its labels; returns the selectors whose selection changed."""
        prepared = IdentityLabels.of(labels)
        old = self._identities.get(identity)
        if old is not None and old.labels == prepared.labels:
            return set()
        self._identities[identity] = prepared
        changed: set[Selector] = set()
        for sel, selected in self._selections.items():
            now = sel.matches(prepared)
            if now != (identity in selected):
                (selected.add if now else selected.discard)(identity)
                changed.add(sel)
        return changed

    def remove_identity(self, identity: int) -> set[Selector]:
        """Forget an identity; returns the selectors that had selected it."""
        if self._identities.pop(identity, None) is None:
            return set()
        changed: set[Selector] = set()
        for sel, selected in self._selections.items():
            if identity in selected:
                selected.discard(identity)
                changed.add(sel)
        return changed

    def identities(self) -> dict[int, Mapping[str, str]]:
        return {i: lab.labels for i, lab in self._identities.items()}

    def labels(self, identity: int) -> Mapping[str, str] | None:
        found = self._identities.get(identity)
        return None if found is None else found.labels

    # selectors --------------------------------------------------------------------------------
    def add_selector(self, sel: Selector) -> frozenset[int]:
        """Register (or add a reference to) a selector; returns its selection."""
        if sel not in self._selections:
            self._selections[sel] = {i for i, lab in self._identities.items() if sel.matches(lab)}
        self._refs[sel] = self._refs.get(sel, 0) + 1
        return frozenset(self._selections[sel])

    def add_selectors(self, sels: Iterable[Selector]) -> None:
        for sel in sels:
            self.add_selector(sel)

    def remove_selector(self, sel: Selector) -> None:
        """Drop one reference; the selector is forgotten when none remain."""
        refs = self._refs.get(sel, 0) - 1
        if refs > 0:
            self._refs[sel] = refs
        elif sel in self._refs:
            del self._refs[sel]
            del self._selections[sel]

    def remove_selectors(self, sels: Iterable[Selector]) -> None:
        for sel in sels:
            self.remove_selector(sel)

    def selections(self, sel: Selector) -> frozenset[int]:
        """The identities ``sel`` matches (computed on the spot if it is not registered)."""
        found = self._selections.get(sel)
        if found is not None:
            return frozenset(found)
        return frozenset(i for i, lab in self._identities.items() if sel.matches(lab))

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
