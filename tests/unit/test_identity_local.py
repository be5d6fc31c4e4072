"""Node-local CIDR identities (cilium-semantics §1.4, §1.7)."""

from __future__ import annotations

import pytest

from membrane.identity.labels import LabelSet
from membrane.identity.local import LocalIdentityAllocator, cidr_labels, cidr_of, normalize_prefix

BASE = 1 << 24


def test_cidr_identity_labels_and_range() -> None:
    local = LocalIdentityAllocator()
    n = local.cidr_identity("10.0.0.0/8")
    assert n == BASE + 1
    assert local.labels(n) == LabelSet(["cidr:10.0.0.0/8", "reserved:world"])
    assert local.cidr_identity("10.1.2.3/8") == n  # same prefix after normalization
    assert local.cidr_identity("192.168.0.0/16") == BASE + 2
    assert local.lookup("192.168.0.0/16") == BASE + 2 and local.lookup("1.1.1.1/32") is None
    assert local.prefixes() == {"10.0.0.0/8": BASE + 1, "192.168.0.0/16": BASE + 2}
    assert set(local.identities()) == {BASE + 1, BASE + 2}


def test_world_prefixes_map_to_world_identities() -> None:
    assert LocalIdentityAllocator().cidr_identity("0.0.0.0/0") == 2
    dual = LocalIdentityAllocator(dual_stack=True)
    assert dual.cidr_identity("0.0.0.0/0") == 9 and dual.cidr_identity("::/0") == 10
    assert dual.identities() == {}


def test_refcounted_release_and_reuse() -> None:
    local = LocalIdentityAllocator()
    a = local.allocate("10.0.0.0/8")
    assert local.allocate("10.0.0.0/8") == a
    b = local.allocate("172.16.0.0/12")
    assert local.release("10.0.0.0/8") is False  # one reference left
    assert local.release("10.0.0.0/8") is True
    assert local.release("10.0.0.0/8") is False
    assert local.labels(a) is None
    assert local.allocate("203.0.113.0/24") == a  # lowest free again
    assert local.lookup("172.16.0.0/12") == b


def test_ipv6_labels_and_exhaustion() -> None:
    assert cidr_labels("2001:db8::/32").strings() == ["cidr:2001-db8--/32", "reserved:world"]
    tiny = LocalIdentityAllocator(min_id=BASE + 1, max_id=BASE + 1)
    tiny.allocate("10.0.0.0/8")
    with pytest.raises(OverflowError):
        tiny.allocate("11.0.0.0/8")
    with pytest.raises(ValueError, match="outside"):
        LocalIdentityAllocator(min_id=5)
    with pytest.raises(ValueError, match="invalid CIDR"):
        normalize_prefix("10.0.0.0/33")


def test_cidr_of_picks_the_most_specific_prefix() -> None:
    assert cidr_of(LabelSet(["cidr:10.0.0.0/8", "cidr:10.1.0.0/16", "reserved:world"])) == "10.1.0.0/16"
    assert cidr_of(cidr_labels("2001:db8::/32")) == "2001-db8--/32"
    assert cidr_of(LabelSet(["k8s:app=web"])) is None
