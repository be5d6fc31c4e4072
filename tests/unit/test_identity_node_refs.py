"""Per-node reference counting over the identity allocator, and ``identity list`` rows (§11.4)."""

from __future__ import annotations

from membrane.identity.allocator import IdentityAllocator
from membrane.identity.labels import LabelSet, pod_identity_labels
from membrane.identity.local import cidr_labels
from membrane.identity.node_refs import NodeIdentities
from membrane.identity.render import identity_list_rows
from membrane.identity.reserved import reserved_identities
from tests.unit.test_identity_allocator import PREFIX, MemoryKV, StoreTxnOps


def web(app: str = "web") -> LabelSet:
    return pod_identity_labels({"app": app}, "default", {}, "default")


def test_store_reference_follows_the_last_local_user() -> None:
    kv = MemoryKV()
    alloc = IdentityAllocator(kv, StoreTxnOps(), PREFIX)
    node = NodeIdentities(alloc, "n1", lease=5)
    assert node.acquire(web()) == 256
    assert node.acquire(web()) == 256
    assert node.count(256) == 2 and alloc.refs(256) == ["n1"]
    assert node.release(256) is False and alloc.refs(256) == ["n1"]
    assert node.release(256) is True and alloc.refs(256) == []
    assert node.release(256) is False and node.identities() == {}


def test_relabel_moves_to_the_new_identity_and_reserved_is_not_counted() -> None:
    kv = MemoryKV()
    alloc = IdentityAllocator(kv, StoreTxnOps(), PREFIX)
    node = NodeIdentities(alloc, "n1")
    old = node.acquire(web("a"))
    new = node.acquire(web("b"))
    node.release(old)
    assert (old, new) == (256, 257) and node.identities() == {257: web("b")}
    assert alloc.collect_garbage() == [256]
    assert node.acquire(LabelSet(["reserved:host"])) == 1 and node.count(1) == 0


def test_restore_rewrites_references_under_a_new_lease() -> None:
    kv = MemoryKV()
    alloc = IdentityAllocator(kv, StoreTxnOps(), PREFIX)
    node = NodeIdentities(alloc, "n1", lease=5)
    node.acquire(web())
    kv.delete(PREFIX + "refs/256/n1")  # the old lease expired
    node.restore(lease=9)
    ref = kv.get(PREFIX + "refs/256/n1")
    assert ref is not None and ref.lease == 9


def test_identity_list_rows() -> None:
    ids = {**reserved_identities(), 256: web(), (1 << 24) + 1: cidr_labels("10.0.0.0/8")}
    rows = identity_list_rows(ids)
    assert rows[0] == ("ID", "LABELS")
    assert rows[1] == ("1", "reserved:host")
    assert ("7", "reserved:kube-apiserver") in rows and rows[rows.index(("7", "reserved:kube-apiserver")) + 1] == (
        "", "reserved:remote-node")
    start = rows.index(("256", "k8s:app=web"))
    assert rows[start + 1] == ("", "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=default")
    assert rows[-1] == (str((1 << 24) + 1), "cidr:10.0.0.0/8")
    counted = identity_list_rows({256: web()}, refcounts={256: 3})
    assert counted[0] == ("ID", "LABELS", "REFCOUNT") and counted[1] == ("256", "k8s:app=web", "3")
    assert counted[2][2] == ""
