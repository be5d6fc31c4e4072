"""The cluster-wide identity allocator against an in-memory KV store with etcd's transaction semantics.

The fake interprets the real ``membrane.store.txn`` comparisons and operations, so the allocator is
exercised with exactly the objects it hands to ``EtcdClient.txn``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from membrane.identity.allocator import IdentityAllocator, IdentityError, decode_labels, encode_labels
from membrane.identity.labels import LabelSet, pod_identity_labels
from membrane.store.kv import KV
from membrane.store.txn import (
    Compare,
    Op,
    OpResponse,
    TxnResult,
    mod_revision_eq,
    txn_request,
    value_eq,
    version_eq,
)

PREFIX = "/membrane/test/identities/"


class StoreTxnOps:
    """What the lead wires in production: the store's builders behind the allocator's TxnOps protocol."""

    version_eq = staticmethod(version_eq)
    mod_revision_eq = staticmethod(mod_revision_eq)
    value_eq = staticmethod(value_eq)
    put = staticmethod(Op.put)
    delete = staticmethod(Op.delete)


class MemoryKV:
    """A thread-safe in-memory etcd: revisions, versions and atomic compare-and-swap transactions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, KV] = {}
        self.revision = 1
        self.before_txn: Callable[[], None] | None = None  # test hook: runs once before the next txn

    def get(self, key: str) -> KV | None:
        with self._lock:
            return self._data.get(key)

    def get_prefix(self, prefix: str) -> tuple[list[KV], int]:
        with self._lock:
            return [self._data[k] for k in sorted(self._data) if k.startswith(prefix)], self.revision

    def delete(self, key: str) -> int:
        with self._lock:
            return self._delete(key)

    def txn(self, compare: list[Compare], success: list[Op], failure: list[Op] | None = None) -> TxnResult:
        txn_request(compare, success, failure or [])  # what EtcdClient would send must encode
        hook, self.before_txn = self.before_txn, None
        if hook is not None:
            hook()
        with self._lock:
            ok = all(self._holds(c) for c in compare)
            ops = success if ok else (failure or [])
            if any(op.kind != "range" for op in ops):
                self.revision += 1
            responses = [self._apply(op) for op in ops]
            return TxnResult(ok, self.revision, responses)

    def _holds(self, c: Compare) -> bool:
        kv = self._data.get(c.key)
        actual: Any = {
            "VERSION": kv.version if kv else 0,
            "MOD": kv.mod_revision if kv else 0,
            "CREATE": kv.create_revision if kv else 0,
            "LEASE": kv.lease if kv else 0,
            "VALUE": kv.value if kv else None,
        }[c.target]
        if c.target == "VALUE" and actual is None:
            return False  # etcd: a value comparison on a missing key fails
        return {"EQUAL": actual == c.operand, "NOT_EQUAL": actual != c.operand,
                "GREATER": actual > c.operand, "LESS": actual < c.operand}[c.result]

    def _apply(self, op: Op) -> OpResponse:
        assert not op.prefix
        if op.kind == "put":
            old = self._data.get(op.key)
            self._data[op.key] = KV(op.key, op.value, old.create_revision if old else self.revision,
                                    self.revision, (old.version if old else 0) + 1, op.lease)
            return OpResponse("put", revision=self.revision)
        if op.kind == "delete":
            return OpResponse("delete", deleted=self._delete(op.key), revision=self.revision)
        kv = self._data.get(op.key)
        return OpResponse("range", [kv] if kv else [])

    def _delete(self, key: str) -> int:
        return 1 if self._data.pop(key, None) is not None else 0

    def keys(self) -> list[str]:
        return sorted(k[len(PREFIX):] for k in self._data)


def labels(app: str, ns: str = "default") -> LabelSet:
    return pod_identity_labels({"app": app}, ns, {}, "default")


@pytest.fixture
def kv() -> MemoryKV:
    return MemoryKV()


@pytest.fixture
def alloc(kv: MemoryKV) -> IdentityAllocator:
    return IdentityAllocator(kv, StoreTxnOps(), PREFIX)


def test_first_identity_is_256_and_keys_follow_the_layout(kv: MemoryKV, alloc: IdentityAllocator) -> None:
    web = labels("web")
    assert alloc.allocate("n1", web, lease=7) == 256
    assert kv.keys() == ["id/256", f"labels/{web.sha256()}", "refs/256/n1"]
    assert decode_labels(kv.get(PREFIX + "id/256").value) == web  # type: ignore[union-attr]
    assert kv.get(PREFIX + f"labels/{web.sha256()}").value == b"256"  # type: ignore[union-attr]
    assert kv.get(PREFIX + "refs/256/n1").lease == 7  # type: ignore[union-attr]
    assert alloc.get(256) == web and alloc.lookup(web) == 256 and alloc.refs(256) == ["n1"]


def test_same_labels_same_identity_across_nodes(alloc: IdentityAllocator) -> None:
    a = alloc.allocate("n1", labels("web"))
    b = alloc.allocate("n2", labels("web"))
    c = alloc.allocate("n1", labels("db"))
    assert a == b == 256 and c == 257
    assert alloc.allocate("n1", labels("web")) == 256  # idempotent
    assert alloc.refs(256) == ["n1", "n2"]
    assert alloc.list() == {256: labels("web"), 257: labels("db")}


def test_reserved_label_sets_are_not_stored(kv: MemoryKV, alloc: IdentityAllocator) -> None:
    assert alloc.allocate("n1", LabelSet(["reserved:host"])) == 1
    assert alloc.allocate("n1", LabelSet(["reserved:init"])) == 5
    assert kv.keys() == []
    assert alloc.get(1) == LabelSet(["reserved:host"]) and alloc.get(99) is None and alloc.get(300) is None
    assert alloc.release("n1", 1) is False
    with pytest.raises(ValueError, match="at least one label"):
        alloc.allocate("n1", LabelSet())


def test_lowest_free_number_is_reused_after_collection(alloc: IdentityAllocator) -> None:
    for app in ("a", "b", "c"):
        alloc.allocate("n1", labels(app))
    assert alloc.release("n1", 257) is True
    assert alloc.release("n1", 257) is False
    assert alloc.collect_garbage() == [257]
    assert alloc.lookup(labels("b")) is None and alloc.get(257) is None
    assert alloc.allocate("n1", labels("d")) == 257


def test_gc_keeps_identities_referenced_by_any_node(alloc: IdentityAllocator) -> None:
    alloc.allocate("n1", labels("web"))
    alloc.allocate("n2", labels("web"))
    alloc.release("n1", 256)
    assert alloc.collect_garbage() == []
    alloc.release("n2", 256)
    assert alloc.collect_garbage() == [256]


def test_lost_race_for_a_number_moves_to_the_next(kv: MemoryKV, alloc: IdentityAllocator) -> None:
    other = IdentityAllocator(kv, StoreTxnOps(), PREFIX)
    kv.before_txn = lambda: other.allocate("n2", labels("db"))  # n2 claims 256 between our read and txn
    assert alloc.allocate("n1", labels("web")) == 257
    assert alloc.lookup(labels("db")) == 256


def test_lost_race_for_the_same_labels_adopts_the_winner(kv: MemoryKV, alloc: IdentityAllocator) -> None:
    other = IdentityAllocator(kv, StoreTxnOps(), PREFIX)
    kv.before_txn = lambda: other.allocate("n2", labels("web"))
    assert alloc.allocate("n1", labels("web")) == 256
    assert alloc.refs(256) == ["n1", "n2"] and list(alloc.list()) == [256]


def test_gc_loses_to_a_concurrent_reference(kv: MemoryKV, alloc: IdentityAllocator) -> None:
    alloc.allocate("n1", labels("web"))
    alloc.release("n1", 256)
    # After the collector read "no refs", n2 takes a reference before the collector's transaction.
    kv.before_txn = lambda: alloc.allocate("n2", labels("web"))
    assert alloc.collect_garbage() == []
    assert alloc.get(256) == labels("web") and alloc.refs(256) == ["n2"]


def test_reference_to_a_collected_identity_reallocates(kv: MemoryKV, alloc: IdentityAllocator) -> None:
    alloc.allocate("n1", labels("web"))
    alloc.release("n1", 256)
    # Between our lookup and our reference transaction the collector deletes 256.
    kv.before_txn = alloc.collect_garbage
    assert alloc.allocate("n2", labels("web")) == 256
    assert alloc.refs(256) == ["n2"] and alloc.get(256) == labels("web")


def test_half_deleted_identity_is_repaired(kv: MemoryKV, alloc: IdentityAllocator) -> None:
    alloc.allocate("n1", labels("web"))
    kv.delete(PREFIX + "id/256")
    assert alloc.allocate("n1", labels("web")) == 256
    assert alloc.get(256) == labels("web")


def test_range_exhaustion(kv: MemoryKV) -> None:
    small = IdentityAllocator(kv, StoreTxnOps(), PREFIX, min_id=256, max_id=257)
    small.allocate("n1", labels("a"))
    small.allocate("n1", labels("b"))
    with pytest.raises(IdentityError, match="no free identity"):
        small.allocate("n1", labels("c"))


def test_constructor_checks(kv: MemoryKV) -> None:
    with pytest.raises(ValueError, match="must end with"):
        IdentityAllocator(kv, StoreTxnOps(), "/x")
    with pytest.raises(ValueError, match="outside"):
        IdentityAllocator(kv, StoreTxnOps(), PREFIX, min_id=10)
    with pytest.raises(ValueError, match="node name"):
        IdentityAllocator(kv, StoreTxnOps(), PREFIX).ref_key(256, "a/b")


def test_concurrent_allocators_agree(kv: MemoryKV) -> None:
    nodes = [f"n{i}" for i in range(8)]
    apps = ["web", "db", "cache"]
    results: dict[tuple[str, str], int] = {}
    barrier = threading.Barrier(len(nodes))
    errors: list[BaseException] = []

    def run(node: str) -> None:
        try:
            alloc = IdentityAllocator(kv, StoreTxnOps(), PREFIX, max_attempts=200)
            barrier.wait(timeout=10)
            for app in apps:
                results[(node, app)] = alloc.allocate(node, labels(app))
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(n,)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    by_app = {app: {results[(n, app)] for n in nodes} for app in apps}
    assert all(len(ids) == 1 for ids in by_app.values())
    assert sorted(next(iter(ids)) for ids in by_app.values()) == [256, 257, 258]
    check = IdentityAllocator(kv, StoreTxnOps(), PREFIX)
    assert {n: check.refs(n) for n in (256, 257, 258)} == {n: nodes for n in (256, 257, 258)}


def test_label_encoding_round_trip() -> None:
    web = labels("web")
    assert decode_labels(encode_labels(web)) == web
    with pytest.raises(ValueError):
        decode_labels(b'{"a": 1}')


def test_etcd_client_has_the_backend_methods() -> None:
    import inspect

    from membrane.store.etcd import EtcdClient

    for name, params in {"get": ["key"], "get_prefix": ["prefix"], "delete": ["key"],
                         "txn": ["compare", "success", "failure"]}.items():
        sig = inspect.signature(getattr(EtcdClient, name))
        assert list(sig.parameters)[1:len(params) + 1] == params, name
