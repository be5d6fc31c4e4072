"""Buckets that narrow "which identities can this selector match" (and the reverse) without a full scan.

An identity falls into one bucket per label it has (``("label", key, value)``, keys as in
:attr:`IdentityLabels.view`, so ``any:<key>`` too), one per key (``("key", key)``), ``CIDR`` when a
CIDR selector could match it (a ``cidr:`` label or a world label) and ``ALL``. A selector is filed
under an *anchor*: a set of buckets that together hold every identity it can match — the values of
one ``In`` requirement, the key of one ``Exists`` requirement, ``CIDR`` for CIDR selectors, ``ALL``
when nothing narrows it (an empty selector, only ``NotIn``/``DoesNotExist``). Matching still decides;
buckets only pick the candidates, so a selector is tested against the identities of its anchor and an
identity against the selectors filed under its buckets.
"""

from __future__ import annotations

from membrane.policy.selector import (
    NAMESPACE_KEY,
    CIDRSelector,
    IdentityLabels,
    Selector,
    cidr_candidate,
    split_key,
)

Bucket = tuple[str, ...]
ALL: Bucket = ("all",)
CIDR: Bucket = ("cidr",)
Anchor = tuple[Bucket, ...]


def identity_buckets(identity: IdentityLabels) -> list[Bucket]:
    """Every bucket ``identity`` belongs to."""
    out: list[Bucket] = [ALL]
    for key, value in identity.view.items():
        out.append(("key", key))
        out.append(("label", key, value))
    if cidr_candidate(identity):
        out.append(CIDR)
    return out


def anchor_options(sel: Selector) -> list[Anchor]:
    """Alternative anchors of ``sel``: each one's buckets together hold every identity ``sel`` matches."""
    if isinstance(sel, CIDRSelector):
        return [(CIDR,)]
    options: list[Anchor] = []
    for req in sel.requirements:
        if req.operator == "In":  # no values: matches nothing, an empty anchor is exact
            options.append(tuple(("label", req.key, v) for v in req.values))
        elif req.operator == "Exists":
            options.append((("key", req.key),))
    return options or [(ALL,)]


class BucketIndex:
    """Identities per bucket, and selectors per anchor bucket."""

    def __init__(self) -> None:
        self._identities: dict[Bucket, set[int]] = {}
        self._selectors: dict[Bucket, set[Selector]] = {}
        self._anchor: dict[Selector, Anchor] = {}

    # identities -------------------------------------------------------------------------------
    def add_identity(self, identity: int, labels: IdentityLabels) -> None:
        for bucket in identity_buckets(labels):
            self._identities.setdefault(bucket, set()).add(identity)

    def remove_identity(self, identity: int, labels: IdentityLabels) -> None:
        for bucket in identity_buckets(labels):
            members = self._identities.get(bucket)
            if members is not None:
                members.discard(identity)
                if not members:
                    del self._identities[bucket]

    def candidate_identities(self, anchor: Anchor) -> set[int]:
        """The identities in any of ``anchor``'s buckets (a fresh set)."""
        if len(anchor) == 1:
            return set(self._identities.get(anchor[0], ()))
        out: set[int] = set()
        for bucket in anchor:
            out |= self._identities.get(bucket, set())
        return out

    # selectors --------------------------------------------------------------------------------
    def best_anchor(self, sel: Selector) -> Anchor:
        """The anchor with the fewest identities now (ties: not the namespace key, then fewest buckets)."""
        def cost(anchor: Anchor) -> tuple[int, bool, int, Anchor]:
            size = sum(len(self._identities.get(b, ())) for b in anchor)
            on_namespace = any(len(b) > 1 and split_key(b[1])[1] == NAMESPACE_KEY for b in anchor)
            return size, on_namespace, len(anchor), anchor
        return min(anchor_options(sel), key=cost)

    def add_selector(self, sel: Selector) -> set[int]:
        """File ``sel`` under its best anchor; returns the candidate identities it may select."""
        anchor = self.best_anchor(sel)
        self._anchor[sel] = anchor
        for bucket in anchor:
            self._selectors.setdefault(bucket, set()).add(sel)
        return self.candidate_identities(anchor)

    def remove_selector(self, sel: Selector) -> None:
        for bucket in self._anchor.pop(sel, ()):
            members = self._selectors.get(bucket)
            if members is not None:
                members.discard(sel)
                if not members:
                    del self._selectors[bucket]

    def candidate_selectors(self, labels: IdentityLabels) -> set[Selector]:
        """The registered selectors that may select an identity with ``labels``."""
        out: set[Selector] = set()
        for bucket in identity_buckets(labels):
            found = self._selectors.get(bucket)
            if found:
                out |= found
        return out
