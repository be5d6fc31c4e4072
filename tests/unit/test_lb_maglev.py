"""Maglev lookup tables: shape, balance, determinism and consistency (remap ≈ 1/N)."""

from __future__ import annotations

from collections import Counter

import pytest

from membrane.loadbalancer.maglev import (
    ALLOWED_TABLE_SIZES,
    DEFAULT_TABLE_SIZE,
    lookup_table,
    permutation_params,
    remap_fraction,
)


def backends(n: int) -> dict[int, str]:
    return {i: f"10.0.{i % 3}.{i}:80/TCP" for i in range(1, n + 1)}


def test_table_has_size_m_and_only_backend_ids():
    table = lookup_table(backends(7), 251)
    assert len(table) == 251
    assert set(table) == set(range(1, 8))
    assert DEFAULT_TABLE_SIZE == 16381 and len(lookup_table(backends(3))) == 16381


def test_table_is_balanced():
    counts = Counter(lookup_table(backends(10)))
    assert max(counts.values()) - min(counts.values()) <= 1


def test_table_is_deterministic_and_independent_of_input_order():
    b = backends(6)
    assert lookup_table(b, 509) == lookup_table(dict(reversed(list(b.items()))), 509)
    assert lookup_table(b, 509, seed=b"x") != lookup_table(b, 509, seed=b"y")


def test_empty_and_bad_sizes():
    assert lookup_table({}) == []
    with pytest.raises(ValueError, match="not supported"):
        lookup_table(backends(2), 1000)
    assert all(size % d for size in ALLOWED_TABLE_SIZES for d in range(2, int(size ** 0.5) + 1))


def test_permutation_params_in_range():
    for i in range(50):
        offset, skip = permutation_params(f"b{i}", 251)
        assert 0 <= offset < 251 and 1 <= skip < 251


@pytest.mark.parametrize("n", [5, 10, 20])
def test_removing_one_backend_remaps_about_one_nth(n):
    b = backends(n)
    old = lookup_table(b)
    for removed in (1, n // 2, n):
        rest = {k: v for k, v in b.items() if k != removed}
        fraction = remap_fraction(old, lookup_table(rest))
        assert abs(fraction - 1 / n) <= 0.02, (n, removed, fraction)


def test_adding_a_backend_moves_slots_only_to_it_mostly():
    b = backends(10)
    old = lookup_table(b)
    new = lookup_table({**b, 11: "10.0.9.11:80/TCP"})
    moved = [(a, c) for a, c in zip(old, new, strict=True) if a != c]
    assert sum(1 for _, c in moved if c == 11) / len(moved) > 0.8


def test_remap_fraction():
    assert remap_fraction([1, 2, 3, 4], [1, 2, 3, 1]) == 0.25
    assert remap_fraction([], []) == 0.0
    with pytest.raises(ValueError):
        remap_fraction([1], [1, 2])
