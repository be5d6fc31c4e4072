"""etcd transactions: comparisons, operations and their results, and their JSON encoding.

Two ways to write a comparison::

    version_eq(key, 0)             # create-if-absent
    Compare.version(key) == 0      # the same
    Compare.version(key, "=", 0)   # the same
    mod_revision_eq(key, rev)      # compare-and-swap on what was read
    Compare.value(key) != b"x"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from membrane.store.kv import KV, as_int, encode_key, encode_value, kv_from_json, prefix_range_end

_TARGETS = {"version": "VERSION", "create": "CREATE", "mod": "MOD", "value": "VALUE", "lease": "LEASE"}
_OPERATORS = {"=": "EQUAL", "==": "EQUAL", "!=": "NOT_EQUAL", ">": "GREATER", "<": "LESS"}
_TARGET_FIELD = {"VERSION": "version", "CREATE": "create_revision", "MOD": "mod_revision",
                 "VALUE": "value", "LEASE": "lease"}


@dataclass(frozen=True)
class Compare:
    """One guard of a transaction: ``target`` of ``key`` ``result`` ``operand``."""

    key: str
    target: str  # VERSION | CREATE | MOD | VALUE | LEASE
    result: str  # EQUAL | NOT_EQUAL | GREATER | LESS
    operand: int | bytes

    # Each builder works two ways: ``Compare.version(key) == 0`` or ``Compare.version(key, "=", 0)``.
    @staticmethod
    def version(key: str, op: str | None = None, operand: int | None = None) -> Any:
        return _CompareTarget(key, "VERSION").build(op, operand)

    @staticmethod
    def create_revision(key: str, op: str | None = None, operand: int | None = None) -> Any:
        return _CompareTarget(key, "CREATE").build(op, operand)

    @staticmethod
    def mod_revision(key: str, op: str | None = None, operand: int | None = None) -> Any:
        return _CompareTarget(key, "MOD").build(op, operand)

    @staticmethod
    def value(key: str, op: str | None = None, operand: bytes | str | None = None) -> Any:
        return _CompareTarget(key, "VALUE").build(op, operand)

    @staticmethod
    def lease(key: str, op: str | None = None, operand: int | None = None) -> Any:
        return _CompareTarget(key, "LEASE").build(op, operand)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": encode_key(self.key), "target": self.target, "result": self.result}
        name = _TARGET_FIELD[self.target]
        if self.target == "VALUE":
            if not isinstance(self.operand, bytes | str):
                raise TypeError(f"compare on the value of {self.key!r} needs bytes, got {self.operand!r}")
            out[name] = encode_value(self.operand)
        else:
            if not isinstance(self.operand, int) or isinstance(self.operand, bool):
                raise TypeError(f"compare on {name} of {self.key!r} needs an int, got {self.operand!r}")
            out[name] = str(self.operand)
        return out


class _CompareTarget:
    """``Compare.version(key) == 0`` builds a Compare; the operators return Compare, not bool."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, key: str, target: str) -> None:
        self.key = key
        self.target = target

    def build(self, op: str | None, operand: Any) -> _CompareTarget | Compare:
        if op is None:
            if operand is not None:
                raise TypeError(f"compare on {self.key!r}: an operand needs an operator")
            return self
        result = _OPERATORS.get(op)
        if result is None:
            raise ValueError(f"compare on {self.key!r}: operator {op!r} is not one of {', '.join(_OPERATORS)}")
        return Compare(self.key, self.target, result, operand)

    def __eq__(self, other: object) -> Compare:  # type: ignore[override]
        return Compare(self.key, self.target, "EQUAL", other)  # type: ignore[arg-type]

    def __ne__(self, other: object) -> Compare:  # type: ignore[override]
        return Compare(self.key, self.target, "NOT_EQUAL", other)  # type: ignore[arg-type]

    def __gt__(self, other: int) -> Compare:
        return Compare(self.key, self.target, "GREATER", other)

    def __lt__(self, other: int) -> Compare:
        return Compare(self.key, self.target, "LESS", other)


def version_eq(key: str, version: int) -> Compare:
    """The key has this version (0: the key does not exist)."""
    return Compare(key, "VERSION", "EQUAL", version)


def mod_revision_eq(key: str, revision: int) -> Compare:
    """The key was last written at this revision (0: the key does not exist)."""
    return Compare(key, "MOD", "EQUAL", revision)


def create_revision_eq(key: str, revision: int) -> Compare:
    return Compare(key, "CREATE", "EQUAL", revision)


def value_eq(key: str, value: bytes | str) -> Compare:
    """The key exists and holds exactly this value."""
    return Compare(key, "VALUE", "EQUAL", value.encode() if isinstance(value, str) else value)


def lease_eq(key: str, lease: int) -> Compare:
    return Compare(key, "LEASE", "EQUAL", lease)


@dataclass(frozen=True)
class Op:
    """One operation inside a transaction; build with ``Op.put``, ``Op.delete``, ``Op.get`` …"""

    kind: str  # put | delete | range
    key: str
    value: bytes = b""
    lease: int = 0
    prefix: bool = False

    @staticmethod
    def put(key: str, value: bytes | str, lease: int = 0) -> Op:
        return Op("put", key, value.encode() if isinstance(value, str) else value, lease)

    @staticmethod
    def delete(key: str) -> Op:
        return Op("delete", key)

    @staticmethod
    def delete_prefix(prefix: str) -> Op:
        return Op("delete", prefix, prefix=True)

    @staticmethod
    def get(key: str) -> Op:
        return Op("range", key)

    @staticmethod
    def get_prefix(prefix: str) -> Op:
        return Op("range", prefix, prefix=True)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"key": encode_key(self.key)}
        if self.prefix:
            body["range_end"] = prefix_range_end(self.key)
        if self.kind == "put":
            body["value"] = encode_value(self.value)
            if self.lease:
                body["lease"] = str(self.lease)
            return {"request_put": body}
        if self.kind == "delete":
            return {"request_delete_range": body}
        return {"request_range": body}


@dataclass(frozen=True)
class OpResponse:
    """The result of one Op: ``kvs`` for gets, ``deleted`` (count) for deletes."""

    kind: str
    kvs: list[KV] = field(default_factory=list)
    deleted: int = 0
    revision: int = 0


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: list[OpResponse]


def txn_request(compare: list[Compare], success: list[Op], failure: list[Op]) -> dict[str, Any]:
    return {
        "compare": [c.to_json() for c in compare],
        "success": [op.to_json() for op in success],
        "failure": [op.to_json() for op in failure],
    }


def txn_result(data: dict[str, Any]) -> TxnResult:
    responses = []
    for item in data.get("responses") or []:
        if "response_range" in item:
            r = item["response_range"] or {}
            responses.append(OpResponse("range", [kv_from_json(kv) for kv in r.get("kvs") or []],
                                        revision=as_int((r.get("header") or {}).get("revision"))))
        elif "response_delete_range" in item:
            r = item["response_delete_range"] or {}
            responses.append(OpResponse("delete", deleted=as_int(r.get("deleted")),
                                        revision=as_int((r.get("header") or {}).get("revision"))))
        elif "response_put" in item:
            r = item["response_put"] or {}
            responses.append(OpResponse("put", revision=as_int((r.get("header") or {}).get("revision"))))
        else:
            responses.append(OpResponse("unknown"))
    return TxnResult(
        succeeded=bool(data.get("succeeded", False)),
        revision=as_int((data.get("header") or {}).get("revision")),
        responses=responses,
    )


class StoreTxnOps:
    """The transaction builders features ask for through a protocol (e.g. the identity allocator's
    ``TxnOps``), so they can use etcd without importing the store."""

    version_eq = staticmethod(version_eq)
    mod_revision_eq = staticmethod(mod_revision_eq)
    value_eq = staticmethod(value_eq)

    @staticmethod
    def put(key: str, value: bytes | str, lease: int = 0) -> Op:
        return Op.put(key, value, lease=lease)

    @staticmethod
    def delete(key: str) -> Op:
        return Op.delete(key)
