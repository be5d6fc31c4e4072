"""``membrane identity list`` rows in the shape of ``cilium-dbg identity list`` (cilium-semantics §11.4).

One row per label: the first carries the ID, the continuation rows an empty ID. Reserved identities
come first (by number), then the rest by number. CIDR identities show only their most specific
``cidr:`` label. With refcounts (``--endpoints``) a third column holds the count on the first row.
"""

from __future__ import annotations

from collections.abc import Mapping

from membrane.identity.labels import SOURCE_CIDR, LabelSet
from membrane.identity.local import cidr_of

HEADER = ("ID", "LABELS")
HEADER_REFCOUNT = ("ID", "LABELS", "REFCOUNT")


def shown_labels(labels: LabelSet) -> list[str]:
    cidr = cidr_of(labels)
    if cidr is not None:
        return [f"{SOURCE_CIDR}:{cidr}"]
    return labels.strings()


def identity_list_rows(identities: Mapping[int, LabelSet], refcounts: Mapping[int, int] | None = None,
                       header: bool = True) -> list[tuple[str, ...]]:
    """Rows for a tabwriter (cilium-dbg: minwidth 5, padding 3)."""
    rows: list[tuple[str, ...]] = []
    if header:
        rows.append(HEADER if refcounts is None else HEADER_REFCOUNT)
    for n in sorted(identities):
        labels = shown_labels(identities[n]) or [""]
        for i, text in enumerate(labels):
            first = i == 0
            row: tuple[str, ...] = (str(n) if first else "", text)
            if refcounts is not None:
                row += (str(refcounts.get(n, 0)) if first else "",)
            rows.append(row)
    return rows
