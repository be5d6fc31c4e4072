"""Reserved identities (cilium-semantics §1.5), identity ranges (§1.4) and entities (§2.5)."""

from __future__ import annotations

import pytest

from membrane.identity.labels import LabelSet, pod_identity_labels
from membrane.identity.local import cidr_labels
from membrane.identity.reserved import (
    ENTITIES,
    ReservedIdentity,
    entity_identities,
    entity_selects,
    is_cluster_identity,
    is_local_identity,
    is_reserved,
    reserved_identities,
    reserved_identity_of,
    reserved_labels,
    reserved_name,
)


def test_reserved_numbers_match_cilium() -> None:
    expected = {1: "host", 2: "world", 3: "unmanaged", 4: "health", 5: "init", 6: "remote-node",
                7: "kube-apiserver", 8: "ingress", 9: "world-ipv4", 10: "world-ipv6"}
    assert {n: reserved_name(n) for n in expected} == expected
    assert ReservedIdentity.REMOTE_NODE == 6 and reserved_name(300) is None


def test_reserved_labels() -> None:
    assert reserved_labels(1).strings() == ["reserved:host"]
    assert reserved_labels(7).strings() == ["reserved:kube-apiserver", "reserved:remote-node"]
    with pytest.raises(KeyError):
        reserved_labels(42)
    assert sorted(reserved_identities()) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert sorted(reserved_identities(dual_stack=True)) == list(range(1, 11))


def test_reserved_identity_of_label_sets() -> None:
    assert reserved_identity_of(LabelSet(["reserved:host"])) == 1
    assert reserved_identity_of(LabelSet(["reserved:host", "reserved:kube-apiserver"])) == 1
    assert reserved_identity_of(LabelSet(["reserved:init"])) == 5
    assert reserved_identity_of(LabelSet(["reserved:kube-apiserver", "reserved:remote-node"])) == 7
    assert reserved_identity_of(LabelSet(["k8s:app=web"])) is None
    assert reserved_identity_of(LabelSet()) is None


def test_ranges() -> None:
    assert is_reserved(1) and is_reserved(255) and not is_reserved(256) and not is_reserved(0)
    assert is_cluster_identity(256) and is_cluster_identity(65535) and not is_cluster_identity(65536)
    assert is_local_identity((1 << 24) + 1) and not is_local_identity(1 << 24)


def test_entities() -> None:
    web = pod_identity_labels({"app": "web"}, "ns", {}, "default")
    other_cluster = pod_identity_labels({"app": "web"}, "ns", {}, "default", cluster="c2")
    cidr = cidr_labels("10.0.0.0/8")
    known = {300: web, 301: other_cluster, (1 << 24) + 1: cidr}
    assert entity_identities("host", known) == {1}
    assert entity_identities("remote-node", known) == {6, 7}
    assert entity_identities("kube-apiserver", known) == {7}
    assert entity_identities("world", known) == {2, (1 << 24) + 1}
    assert entity_identities("world", {}, dual_stack=True) == {2, 9, 10}
    assert entity_identities("cluster", known) == {1, 3, 4, 5, 6, 7, 8, 300}
    assert entity_identities("all", known) == {1, 2, 3, 4, 5, 6, 7, 8, 300, 301, (1 << 24) + 1}
    assert entity_identities("none", known) == frozenset()
    assert entity_identities("init", known.items()) == {5}
    for name in ("health", "unmanaged", "ingress"):
        assert entity_identities(name, known) == {int(ReservedIdentity[name.upper()])}
    assert set(ENTITIES) >= {"all", "world", "cluster", "host", "remote-node", "kube-apiserver", "health",
                             "init", "unmanaged", "ingress"}
    with pytest.raises(ValueError, match="unknown entity"):
        entity_selects("bogus", web)
