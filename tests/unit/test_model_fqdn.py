"""FQDN selector matching (matchName / matchPattern)."""

from __future__ import annotations

import pytest

from membrane.model.fqdn import matches, pattern_regex


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*.cilium.io", "a.cilium.io", True),
        ("*.cilium.io", "cilium.io", False),
        ("*.cilium.io", "a.b.cilium.io", False),
        ("*cilium.io", "cilium.io", True),
        ("*cilium.io", "subcilium.io", True),
        ("*cilium.io", "www.cilium.io", False),
        ("sub*.cilium.io", "sub.cilium.io", True),
        ("sub*.cilium.io", "subx.cilium.io", True),
        ("**.cilium.io", "a.cilium.io", True),
        ("**.cilium.io", "a.b.cilium.io", True),
        ("**.cilium.io", "cilium.io", False),
        ("*", "anything.at.all", True),
        ("*.Cilium.IO.", "A.cilium.io", True),
        ("cilium.io", "ciliumxio", False),
    ],
)
def test_match_pattern(pattern, name, expected):
    assert matches({"matchPattern": pattern}, name) is expected


def test_match_name_is_exact_and_case_insensitive():
    assert matches({"matchName": "Cilium.io"}, "cilium.io.")
    assert not matches({"matchName": "cilium.io"}, "www.cilium.io")


def test_pattern_regex_is_anchored():
    assert pattern_regex("*.a.b") == r"^[-a-zA-Z0-9_]*[.]a[.]b[.]$"
