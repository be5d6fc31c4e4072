"""Maglev consistent hashing (Eisenbud et al., NSDI'16, §3.4): a lookup table of backend IDs.

Each backend gets a permutation of the table slots from two hashes of its name (``offset`` and
``skip``); backends take turns claiming their next preferred free slot until the table is full. The
table size M must be prime so every permutation visits every slot; Cilium allows the sizes in
``ALLOWED_TABLE_SIZES`` (default 16381, about 100× the largest backend count it serves well).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

DEFAULT_TABLE_SIZE = 16381
ALLOWED_TABLE_SIZES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)


def _hash(seed: bytes, salt: bytes, name: str) -> int:
    digest = hashlib.blake2b(name.encode(), digest_size=8, key=seed, salt=salt).digest()
    return int.from_bytes(digest, "big")


def check_table_size(size: int) -> int:
    if size not in ALLOWED_TABLE_SIZES:
        allowed = ", ".join(str(s) for s in ALLOWED_TABLE_SIZES)
        raise ValueError(f"maglev table size {size} is not supported; use one of {allowed}")
    return size


def permutation_params(name: str, size: int, seed: bytes = b"") -> tuple[int, int]:
    """(offset, skip) of one backend: offset in [0, M), skip in [1, M)."""
    offset = _hash(seed, b"offset", name) % size
    skip = _hash(seed, b"skip", name) % (size - 1) + 1
    return offset, skip


def lookup_table(backends: Mapping[int, str], size: int = DEFAULT_TABLE_SIZE, seed: bytes = b"") -> list[int]:
    """The table (length ``size``) of backend IDs for ``{backend_id: name}``; [] without backends.

    ``name`` identifies the backend across updates (e.g. ``"10.0.1.5:80/TCP"``), so a backend keeps its
    preferences however the others change. ``seed`` (≤ 16 bytes, same on every node) varies the hashes.
    """
    check_table_size(size)
    if not backends:
        return []
    order = sorted(backends.items(), key=lambda item: (item[1], item[0]))  # independent of dict order
    params = [permutation_params(name, size, seed) for _, name in order]
    ids = [bid for bid, _ in order]
    nexts = [0] * len(order)
    table = [-1] * size
    filled = 0
    while True:
        for i, (offset, skip) in enumerate(params):
            slot = (offset + nexts[i] * skip) % size
            while table[slot] >= 0:
                nexts[i] += 1
                slot = (offset + nexts[i] * skip) % size
            table[slot] = ids[i]
            nexts[i] += 1
            filled += 1
            if filled == size:
                return table


def remap_fraction(old: Sequence[int], new: Sequence[int]) -> float:
    """Share of slots whose backend differs between two tables of the same size."""
    if len(old) != len(new):
        raise ValueError(f"tables differ in size ({len(old)} and {len(new)})")
    if not old:
        return 0.0
    return sum(1 for a, b in zip(old, new, strict=True) if a != b) / len(old)
