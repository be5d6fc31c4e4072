"""The cluster-wide numeric identity allocator over an abstract KV store (ARCHITECTURE.md §4).

Keys under ``prefix`` (the store layout's ``identities_prefix``)::

    id/<n>               -> JSON list of the label strings
    labels/<sha256>      -> "<n>"          (sha256 of LabelSet.canonical())
    refs/<n>/<node>      -> "<node>"       (one per node using n; the caller attaches its endpoint lease)

Allocation claims the lowest free number in 256..65535 with one create-if-absent transaction that
writes all three keys, and retries on conflict, so racing allocators for the same labels end with one
number. Taking a reference to an existing identity re-writes ``id/<n>`` in the same transaction as the
reference; garbage collection deletes an identity only if ``id/<n>`` still has the revision it read
together with the empty reference list, so a reference added meanwhile always wins over the collector.

The backend is a structural ``Protocol`` matched by ``membrane.store.etcd.EtcdClient``; comparisons and
operations are built through a ``TxnOps`` object (``membrane.store.txn``'s ``version_eq``,
``mod_revision_eq``, ``value_eq`` and ``Op.put`` / ``Op.delete``), so this package never imports the store.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any, Protocol

from membrane.identity.labels import LabelSet
from membrane.identity.reserved import (
    MAX_CLUSTER_IDENTITY,
    MIN_CLUSTER_IDENTITY,
    is_reserved,
    reserved_identity_of,
    reserved_labels,
)

DEFAULT_MAX_ATTEMPTS = 32


class StoredKV(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def value(self) -> bytes: ...
    @property
    def mod_revision(self) -> int: ...


class TxnOutcome(Protocol):
    @property
    def succeeded(self) -> bool: ...


class KVBackend(Protocol):
    """The few store calls the allocator needs (``EtcdClient`` has them all)."""

    def get(self, key: str) -> StoredKV | None: ...
    def get_prefix(self, prefix: str) -> tuple[Sequence[StoredKV], int]: ...
    def delete(self, key: str) -> int: ...
    def txn(self, compare: list[Any], success: list[Any], failure: list[Any] | None = None) -> TxnOutcome: ...


class TxnOps(Protocol):
    """Builders for the comparisons and operations handed to ``KVBackend.txn``."""

    def version_eq(self, key: str, version: int) -> Any: ...
    def mod_revision_eq(self, key: str, revision: int) -> Any: ...
    def value_eq(self, key: str, value: bytes | str) -> Any: ...
    def put(self, key: str, value: bytes | str, lease: int = 0) -> Any: ...
    def delete(self, key: str) -> Any: ...


class IdentityError(Exception):
    """Allocation failed: the range is exhausted or the store kept changing under us."""


def encode_labels(labels: LabelSet) -> bytes:
    return json.dumps(labels.strings(), separators=(",", ":")).encode()


def decode_labels(raw: bytes) -> LabelSet:
    data = json.loads(raw.decode())
    if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
        raise ValueError(f"identity labels must be a JSON list of strings, got {raw[:80]!r}")
    return LabelSet.from_strings(data)


class IdentityAllocator:
    """Allocates, looks up, references and collects cluster-scoped identities."""

    def __init__(self, backend: KVBackend, ops: TxnOps, prefix: str, *,
                 min_id: int = MIN_CLUSTER_IDENTITY, max_id: int = MAX_CLUSTER_IDENTITY,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None:
        if not prefix.endswith("/"):
            raise ValueError(f"identity prefix {prefix!r} must end with '/'")
        if not MIN_CLUSTER_IDENTITY <= min_id <= max_id <= MAX_CLUSTER_IDENTITY:
            raise ValueError(f"identity range {min_id}..{max_id} is outside "
                             f"{MIN_CLUSTER_IDENTITY}..{MAX_CLUSTER_IDENTITY}")
        self._kv = backend
        self._ops = ops
        self._prefix = prefix
        self._min = min_id
        self._max = max_id
        self._attempts = max_attempts

    # -- keys ---------------------------------------------------------------------------------

    def id_key(self, identity: int) -> str:
        return f"{self._prefix}id/{identity}"

    def labels_key(self, labels: LabelSet) -> str:
        return f"{self._prefix}labels/{labels.sha256()}"

    def ref_key(self, identity: int, node: str) -> str:
        if not node or "/" in node:
            raise ValueError(f"node name {node!r} must be non-empty and contain no '/'")
        return f"{self._prefix}refs/{identity}/{node}"

    # -- reads --------------------------------------------------------------------------------

    def lookup(self, labels: LabelSet) -> int | None:
        """The identity of ``labels`` if one exists (reserved ones included), without allocating."""
        reserved = reserved_identity_of(labels)
        if reserved is not None:
            return reserved
        kv = self._kv.get(self.labels_key(labels))
        return int(kv.value) if kv is not None else None

    def get(self, identity: int) -> LabelSet | None:
        """The labels of ``identity``; None if it is not allocated."""
        if is_reserved(identity):
            try:
                return reserved_labels(identity)
            except KeyError:
                return None
        kv = self._kv.get(self.id_key(identity))
        return decode_labels(kv.value) if kv is not None else None

    def list(self) -> dict[int, LabelSet]:
        """Every allocated cluster identity (reserved ones are not stored)."""
        kvs, _ = self._kv.get_prefix(f"{self._prefix}id/")
        return {int(kv.key.rsplit("/", 1)[1]): decode_labels(kv.value) for kv in kvs}

    def refs(self, identity: int) -> list[str]:
        """The nodes holding a reference to ``identity``."""
        kvs, _ = self._kv.get_prefix(f"{self._prefix}refs/{identity}/")
        return sorted(kv.key.rsplit("/", 1)[1] for kv in kvs)

    # -- writes -------------------------------------------------------------------------------

    def allocate(self, node: str, labels: LabelSet, lease: int = 0) -> int:
        """The identity of ``labels``, allocated if new, with a reference held by ``node``.

        Reserved label sets return their reserved number and touch nothing. Idempotent per node.
        """
        reserved = reserved_identity_of(labels)
        if reserved is not None:
            return reserved
        if not labels:
            raise ValueError("an identity needs at least one label")
        labels_key = self.labels_key(labels)
        encoded = encode_labels(labels)
        for _ in range(self._attempts):
            existing = self._kv.get(labels_key)
            if existing is not None:
                n = int(existing.value)
                if self._reference(node, n, labels_key, encoded, lease):
                    return n
                # A labels key whose id/<n> is gone (half-deleted by hand): drop it and allocate anew.
                self._kv.txn([self._ops.value_eq(labels_key, str(n)), self._ops.version_eq(self.id_key(n), 0)],
                             [self._ops.delete(labels_key)])
                continue
            n = self._lowest_free()
            if n is None:
                raise IdentityError(f"no free identity in {self._min}..{self._max} for {labels.strings()}")
            ok = self._kv.txn(
                [self._ops.version_eq(self.id_key(n), 0), self._ops.version_eq(labels_key, 0)],
                [self._ops.put(self.id_key(n), encoded), self._ops.put(labels_key, str(n)),
                 self._ops.put(self.ref_key(n, node), node, lease)],
            )
            if ok.succeeded:
                return n
        raise IdentityError(f"identity allocation for {labels.strings()} kept conflicting "
                            f"({self._attempts} attempts)")

    def _reference(self, node: str, n: int, labels_key: str, encoded: bytes, lease: int) -> bool:
        """Add ``node``'s reference to an existing ``n`` (and touch id/<n> to fence the collector)."""
        id_key = self.id_key(n)
        result = self._kv.txn(
            [self._ops.value_eq(labels_key, str(n)), self._ops.value_eq(id_key, encoded)],
            [self._ops.put(id_key, encoded), self._ops.put(self.ref_key(n, node), node, lease)],
        )
        return result.succeeded

    def _lowest_free(self) -> int | None:
        kvs, _ = self._kv.get_prefix(f"{self._prefix}id/")
        used = {int(kv.key.rsplit("/", 1)[1]) for kv in kvs}
        for n in range(self._min, self._max + 1):
            if n not in used:
                return n
        return None

    def release(self, node: str, identity: int) -> bool:
        """Drop ``node``'s reference; True if it held one. The identity stays until collected."""
        if is_reserved(identity):
            return False
        return self._kv.delete(self.ref_key(identity, node)) > 0

    def node_references(self, node: str) -> list[int]:
        """The identities ``node`` holds a reference to (an agent's restart compares them with its own)."""
        kvs, _ = self._kv.get_prefix(f"{self._prefix}refs/")
        return sorted(int(kv.key[len(self._prefix):].split("/")[1]) for kv in kvs if kv.key.endswith(f"/{node}"))

    def usage(self) -> tuple[set[int], set[int]]:
        """(every allocated identity, the ones some node references) — the input of ``identity.gc``."""
        ids, referenced = self._scan()
        return set(ids), referenced

    def _scan(self) -> tuple[dict[int, Any], set[int]]:
        kvs, _ = self._kv.get_prefix(self._prefix)
        ids: dict[int, Any] = {}
        referenced: set[int] = set()
        for kv in kvs:
            rest = kv.key[len(self._prefix):]
            kind, _, tail = rest.partition("/")
            if kind == "id":
                ids[int(tail)] = kv
            elif kind == "refs":
                referenced.add(int(tail.split("/", 1)[0]))
        return ids, referenced

    def collect_garbage(self, only: Collection[int] | None = None) -> list[int]:
        """Operator: delete every identity no node references (restricted to ``only`` when given, the
        operator's grace-period decision); returns the numbers deleted."""
        ids, referenced = self._scan()
        deleted = []
        for n, kv in sorted(ids.items()):
            if n in referenced or (only is not None and n not in only):
                continue
            try:
                labels_key = self.labels_key(decode_labels(kv.value))
            except ValueError:
                labels_key = ""
            success = [self._ops.delete(kv.key)]
            compare = [self._ops.mod_revision_eq(kv.key, kv.mod_revision)]
            if labels_key:
                success.append(self._ops.delete(labels_key))
            if self._kv.txn(compare, success).succeeded:
                deleted.append(n)
        return deleted
