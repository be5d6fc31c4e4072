"""Kubernetes-like objects stored as JSON under ``/membrane/<cluster>/resources/``.

``metadata.resourceVersion`` is the etcd mod revision of the object's key (as a string, like
Kubernetes); it is never stored. ``uid``, ``creationTimestamp`` and ``generation`` are kept by the
store: set on create, preserved on update, ``generation`` bumped when anything but metadata and
status changes. Applying an object without ``status`` keeps the stored status (controllers own it).

The group, kind and namespace come from the object (group = apiVersion before "/" or "core";
namespace = metadata.namespace or "_" for cluster-scoped objects); defaulting a namespaced kind's
namespace is the caller's business (it knows the kinds, this codec does not).
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from membrane.model.errors import ValidationError
from membrane.store.errors import ConflictError, NotFound, StoreError
from membrane.store.etcd import EtcdClient
from membrane.store.kv import KV
from membrane.store.layout import CLUSTER_SCOPE, ResourceKey, StoreLayout, group_of
from membrane.store.service_alloc import admit_services, is_service, release_services
from membrane.store.txn import Compare, Op, TxnResult, mod_revision_eq

CREATED, CONFIGURED, UNCHANGED = "created", "configured", "unchanged"
DEFAULT_MAX_TXN_OPS = 128  # etcd's --max-txn-ops default
_STORE_MANAGED = ("uid", "creationTimestamp", "generation")


def key_of(obj: Any, where: str = "object") -> ResourceKey:
    """The ResourceKey of an object; ValidationError naming ``where`` and the field if it has none."""
    if not isinstance(obj, dict):
        raise ValidationError(f"expected a mapping, got {type(obj).__name__}", where)
    api_version, kind, meta = obj.get("apiVersion"), obj.get("kind"), obj.get("metadata")
    if not isinstance(api_version, str) or not api_version:
        raise ValidationError("apiVersion is required", where)
    if not isinstance(kind, str) or not kind:
        raise ValidationError("kind is required", where)
    if not isinstance(meta, dict):
        raise ValidationError("metadata is required", where)
    try:
        return ResourceKey(group_of(api_version), kind, meta.get("namespace") or CLUSTER_SCOPE, meta.get("name"))
    except ValidationError as exc:
        raise exc.within(where) from None


def _spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _encode(obj: dict[str, Any]) -> bytes:
    """The stored form: ``obj`` without metadata.resourceVersion (shallow copies; ``obj`` is not changed)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "resourceVersion" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}}
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


class ResourceStore:
    """Typed access to the resource objects of one cluster."""

    def __init__(self, client: EtcdClient, cluster: str, *, max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
                 retries: int = 5, clock: Callable[[], float] = time.time,
                 new_uid: Callable[[], str] = lambda: str(uuid.uuid4())) -> None:
        self.client = client
        self.layout = StoreLayout(cluster)
        self.max_txn_ops = max_txn_ops
        self.retries = retries
        self._clock = clock
        self._new_uid = new_uid

    # -- codec -------------------------------------------------------------------------------

    def decode(self, kv: KV) -> dict[str, Any]:
        """A stored KV as an object with metadata.resourceVersion set."""
        try:
            obj = json.loads(kv.value)
        except ValueError as exc:
            raise StoreError(f"etcd {self.client.endpoint}: {kv.key}: stored value is not JSON: {exc}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise StoreError(f"etcd {self.client.endpoint}: {kv.key}: stored value is not an object with metadata")
        obj["metadata"]["resourceVersion"] = str(kv.mod_revision)
        return obj

    def path(self, key: ResourceKey | tuple[str, str, str, str]) -> str:
        return self.layout.resource_key(ResourceKey.of(key))

    def _merge(self, obj: dict[str, Any], existing: dict[str, Any] | None) -> dict[str, Any]:
        """What to store for ``obj`` given the stored object (None if new)."""
        new = copy.deepcopy(obj)
        meta = new.setdefault("metadata", {})
        meta.pop("resourceVersion", None)
        if existing is None:
            meta["uid"] = self._new_uid()
            meta["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._clock()))
            meta["generation"] = 1
            return new
        old_meta = existing.get("metadata", {})
        for name in _STORE_MANAGED:
            if name in old_meta:
                meta[name] = old_meta[name]
            else:
                meta.pop(name, None)
        if "status" not in new and "status" in existing:
            new["status"] = copy.deepcopy(existing["status"])
        if _spec_part(new) != _spec_part(existing):
            meta["generation"] = int(old_meta.get("generation") or 0) + 1
        return new

    @staticmethod
    def _without_rv(obj: dict[str, Any]) -> dict[str, Any]:
        out = dict(obj)
        out["metadata"] = {k: v for k, v in obj.get("metadata", {}).items() if k != "resourceVersion"}
        return out

    # -- reads -------------------------------------------------------------------------------

    def get(self, group: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        kv = self.client.get(self.path((group, kind, namespace or CLUSTER_SCOPE, name)))
        return self.decode(kv) if kv else None

    def list(self, group: str, kind: str, namespace: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """Objects of one kind (in one namespace, or all), sorted by key, and the revision read at."""
        kvs, rev = self.client.get_prefix(self.layout.resource_prefix(group, kind, namespace))
        return [self.decode(kv) for kv in kvs], rev

    def _read_many(self, paths: list[str]) -> dict[str, KV | None]:
        """Current KVs of many keys, ``max_txn_ops`` gets per round trip."""
        out: dict[str, KV | None] = {}
        for i in range(0, len(paths), self.max_txn_ops):
            chunk = paths[i:i + self.max_txn_ops]
            result = self.client.txn([], [Op.get(p) for p in chunk])
            for path, resp in zip(chunk, result.responses, strict=True):
                out[path] = resp.kvs[0] if resp.kvs else None
        return out

    # -- writes ------------------------------------------------------------------------------

    def apply_many(
        self, objs: list[dict[str, Any]],
        check_update: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
    ) -> list[tuple[dict[str, Any], str]]:
        """Create or replace many objects in ONE transaction: all are stored or none.

        Returns (stored object with resourceVersion, "created" | "configured" | "unchanged") in
        input order. Bad input raises ValidationError (naming objects[i]) before anything is written;
        a concurrent change is retried ``retries`` times, then ConflictError. Services are admitted in
        the same transaction (``service_alloc``): a refused one raises ServiceInvalid, nothing written.
        ``check_update(old, new)`` sees each stored object and its replacement as this transaction
        would compare them, and may raise ValidationError (an immutable field) to refuse the whole apply.
        """
        keys = [key_of(obj, f"objects[{i}]") for i, obj in enumerate(objs)]
        seen: dict[ResourceKey, int] = {}
        for i, key in enumerate(keys):
            if key in seen:
                raise ValidationError(f"{key} appears twice (objects[{seen[key]}] and objects[{i}])")
            seen[key] = i
        if len(objs) > self.max_txn_ops:
            raise StoreError(
                f"apply of {len(objs)} objects exceeds the store's transaction limit of {self.max_txn_ops} "
                "operations (etcd --max-txn-ops); apply them in smaller groups")
        if not objs:
            return []
        paths = [self.layout.resource_key(k) for k in keys]
        for _ in range(self.retries):
            current = self._read_many(paths)
            olds = [self._without_rv(self.decode(kv)) if (kv := current[p]) else None for p in paths]
            # Services get their ClusterIP/NodePorts here, in this transaction (ServiceInvalid if refused).
            drafts = [copy.deepcopy(obj) if is_service(obj) else obj for obj in objs]
            alloc_compares, alloc_ops = admit_services(self.client, self.layout, drafts, olds)
            verdicts: list[tuple[dict[str, Any], str]] = []
            puts: list[Op] = []
            for obj, path, old in zip(drafts, paths, olds, strict=True):
                kv = current[path]
                if old is not None and check_update is not None:
                    check_update(old, obj)
                new = self._merge(obj, old)
                if old is not None and new == old:
                    new["metadata"]["resourceVersion"] = str(kv.mod_revision)  # type: ignore[union-attr]
                    verdicts.append((new, UNCHANGED))
                    continue
                verdicts.append((new, CONFIGURED if old is not None else CREATED))
                puts.append(Op.put(path, _encode(new)))
            if not puts and not alloc_ops:
                return verdicts
            compares = [mod_revision_eq(p, kv.mod_revision if kv else 0) for p, kv in current.items()]
            result = self._txn(compares + alloc_compares, puts + alloc_ops, f"apply of {len(objs)} objects")
            if result.succeeded:
                for new, verdict in verdicts:
                    if verdict != UNCHANGED:
                        new["metadata"]["resourceVersion"] = str(result.revision)
                return verdicts
        raise ConflictError(
            f"etcd {self.client.endpoint}: apply of {len(objs)} objects: they kept changing concurrently "
            f"({self.retries} attempts); nothing was written by the last attempt")

    def delete_many(self, keys: list[ResourceKey | tuple[str, str, str, str]]) -> list[bool]:
        """Delete many objects in one transaction; True for each that existed."""
        rkeys = [ResourceKey.of(k) for k in keys]
        if len(rkeys) > self.max_txn_ops:
            raise StoreError(f"delete of {len(rkeys)} objects exceeds the store's transaction limit of "
                             f"{self.max_txn_ops} operations (etcd --max-txn-ops)")
        if not rkeys:
            return []
        paths = [self.layout.resource_key(k) for k in rkeys]
        if len(set(paths)) != len(paths):
            raise ValidationError("delete: the same object is named more than once")
        services = [p for k, p in zip(rkeys, paths, strict=True) if (k.group, k.kind) == ("core", "Service")]
        if not services:
            result = self.client.txn([], [Op.delete(p) for p in paths])
            return [resp.deleted > 0 for resp in result.responses]
        for _ in range(self.retries):  # a Service's ClusterIP/NodePorts are freed in the same transaction
            current = self._read_many(services)
            stored = [self.decode(kv) for kv in current.values() if kv is not None]
            compares, frees = release_services(self.client, self.layout, stored)
            compares += [mod_revision_eq(p, kv.mod_revision if kv else 0) for p, kv in current.items()]
            result = self._txn(compares, [Op.delete(p) for p in paths] + frees, f"delete of {len(paths)} objects")
            if result.succeeded:
                return [resp.deleted > 0 for resp in result.responses[:len(paths)]]
        raise ConflictError(f"etcd {self.client.endpoint}: delete of {len(paths)} objects: the Services kept "
                            f"changing concurrently ({self.retries} attempts); nothing was deleted")

    def _txn(self, compares: list[Compare], ops: list[Op], what: str) -> TxnResult:
        """One transaction, refused before it is sent if it exceeds etcd's --max-txn-ops."""
        if max(len(compares), len(ops)) > self.max_txn_ops:
            raise StoreError(f"{what} needs {max(len(compares), len(ops))} operations in one transaction, "
                             f"over the store's limit of {self.max_txn_ops} (etcd --max-txn-ops); "
                             "split it into smaller groups")
        return self.client.txn(compares, ops)

    def put_object(self, obj: dict[str, Any], expected_revision: int | None = None) -> dict[str, Any]:
        """Write one object (keeping uid/creationTimestamp/status as apply does).

        With ``expected_revision`` this is a compare-and-swap: it succeeds only if the stored
        object's resourceVersion is that number (0: it must not exist yet), else ConflictError.
        Without it, the write is retried against concurrent changes.
        """
        key = key_of(obj)
        return self._swap(key, lambda _old: obj, expected_revision, allow_create=True)

    def update_status(self, group: str, kind: str, namespace: str, name: str, status: Any,
                      expected_revision: int | None = None) -> dict[str, Any]:
        """Replace the status of an existing object (NotFound if absent); CAS as in put_object."""
        key = ResourceKey(group, kind, namespace or CLUSTER_SCOPE, name)

        def with_status(old: dict[str, Any] | None) -> dict[str, Any]:
            assert old is not None
            new = copy.deepcopy(old)
            new["status"] = copy.deepcopy(status)
            return new

        return self._swap(key, with_status, expected_revision, allow_create=False)

    def update_statuses(self, items: list[tuple[dict[str, Any], Any]]) -> list[bool]:
        """Replace the status of many objects as read (each with its resourceVersion), ``max_txn_ops``
        per transaction, each compare-and-swap on its own revision; True for each one written.

        Only the status changes, so nothing is admitted again (a Service keeps its addresses). A chunk
        whose transaction fails because one object changed is retried object by object.
        """
        done: list[bool] = []
        for i in range(0, len(items), self.max_txn_ops):
            chunk = items[i:i + self.max_txn_ops]
            compares, puts = [], []
            for obj, status in chunk:
                path = self.layout.resource_key(key_of(obj))
                new = self._without_rv(obj)  # a shallow copy: only encoded, never kept or changed
                new["status"] = status
                compares.append(mod_revision_eq(path, int(obj["metadata"]["resourceVersion"])))
                puts.append(Op.put(path, _encode(new)))
            if self.client.txn(compares, puts).succeeded:
                done += [True] * len(chunk)
                continue
            for cmp, put in zip(compares, puts, strict=True):
                done.append(self.client.txn([cmp], [put]).succeeded)
        return done

    def get_many(self, keys: list[ResourceKey | tuple[str, str, str, str]]) -> list[dict[str, Any] | None]:
        """The stored objects of many keys (None where absent), ``max_txn_ops`` per round trip."""
        paths = [self.path(k) for k in keys]
        current = self._read_many(paths)
        return [self.decode(kv) if (kv := current[p]) is not None else None for p in paths]

    def replace_many(self, items: list[tuple[dict[str, Any] | None, dict[str, Any]]]) -> list[bool]:
        """Replace many objects as read: ``(read, wanted)`` pairs, ``read`` with its resourceVersion, each
        a compare-and-swap on that revision, ``max_txn_ops`` per transaction; True for each one written.
        ``read`` None creates ``wanted`` if its key does not exist (as ``put_object`` with revision 0).
        The keys must be distinct (etcd refuses a transaction that names one twice).
        Stored as ``put_object`` stores ``wanted`` over ``read`` (store-managed metadata kept, generation
        bumped on a spec change) without its GET per object. Not for Services (their admission needs the
        GET). A chunk whose transaction fails because one object changed is retried object by object."""
        done: list[bool] = []
        for i in range(0, len(items), self.max_txn_ops):
            compares, puts = [], []
            for read, wanted in items[i:i + self.max_txn_ops]:
                key = key_of(read if read is not None else wanted)
                if key_of(wanted) != key or is_service(wanted):
                    raise ValidationError(f"{key}: replace_many cannot change a key or store a Service")
                path = self.layout.resource_key(key)
                revision = int(read["metadata"]["resourceVersion"]) if read is not None else 0
                compares.append(mod_revision_eq(path, revision))
                puts.append(Op.put(path, _encode(self._merge(wanted, self._without_rv(read) if read else None))))
            if self.client.txn(compares, puts).succeeded:
                done += [True] * len(puts)
                continue
            for cmp, put in zip(compares, puts, strict=True):
                done.append(self.client.txn([cmp], [put]).succeeded)
        return done

    def update(self, key: ResourceKey | tuple[str, str, str, str],
               mutate: Callable[[dict[str, Any]], dict[str, Any] | None]) -> dict[str, Any]:
        """Read-modify-write an existing object: ``mutate(copy)`` returns the new object (or edits
        the copy in place and returns None); retried on concurrent changes."""
        rkey = ResourceKey.of(key)

        def apply(old: dict[str, Any] | None) -> dict[str, Any]:
            assert old is not None
            draft = copy.deepcopy(old)
            result = mutate(draft)
            return draft if result is None else result

        return self._swap(rkey, apply, None, allow_create=False)

    def _swap(self, key: ResourceKey, build: Callable[[dict[str, Any] | None], dict[str, Any]],
              expected_revision: int | None, allow_create: bool) -> dict[str, Any]:
        path = self.layout.resource_key(key)
        for _ in range(self.retries):
            kv = self.client.get(path)
            actual = kv.mod_revision if kv else 0
            if expected_revision is not None and actual != expected_revision:
                raise ConflictError(f"etcd {self.client.endpoint}: {key}: expected resourceVersion "
                                    f"{expected_revision}, found {actual or 'no object'}")
            if kv is None and not allow_create:
                raise NotFound(f"etcd {self.client.endpoint}: {key} does not exist")
            old = self._without_rv(self.decode(kv)) if kv else None
            wanted = build(old)
            if key_of(wanted) != key:
                raise ValidationError(f"{key}: an update must not change apiVersion group, kind, namespace or name")
            if is_service(wanted):  # admitted as apply admits it: no Service is stored unallocated
                wanted = copy.deepcopy(wanted)
            alloc_compares, alloc_ops = admit_services(self.client, self.layout, [wanted], [old])
            new = self._merge(wanted, old)
            if old is not None and new == old and not alloc_ops:
                new["metadata"]["resourceVersion"] = str(actual)
                return new
            result = self.client.txn([mod_revision_eq(path, actual), *alloc_compares],
                                     [Op.put(path, _encode(new)), *alloc_ops])
            if result.succeeded:
                new["metadata"]["resourceVersion"] = str(result.revision)
                return new
            # Retried: a changed object fails the expected_revision check above; a Service whose
            # address was taken meanwhile is refused by admission.
        raise ConflictError(f"etcd {self.client.endpoint}: {key}: kept changing concurrently ({self.retries} attempts)")
