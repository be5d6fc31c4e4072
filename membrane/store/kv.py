"""One key-value pair as etcd stores it, and the wire encoding of keys and values (base64 in JSON)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class KV:
    """A stored key with its value and etcd's bookkeeping (revisions are store-wide counters)."""

    key: str
    value: bytes
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    lease: int = 0

    def text(self) -> str:
        """The value decoded as UTF-8."""
        return self.value.decode()


def encode_key(key: str | bytes) -> str:
    raw = key_bytes(key) if isinstance(key, str) else key
    return base64.b64encode(raw).decode("ascii")


def encode_value(value: bytes | str) -> str:
    raw = value.encode() if isinstance(value, str) else value
    return base64.b64encode(raw).decode("ascii")


def decode_bytes(field: str | None) -> bytes:
    return base64.b64decode(field) if field else b""


def decode_key(field: str | None) -> str:
    # surrogateescape keeps keys that are not UTF-8 round-trippable instead of failing a whole listing.
    return decode_bytes(field).decode("utf-8", errors="surrogateescape")


def key_bytes(key: str) -> bytes:
    return key.encode("utf-8", errors="surrogateescape")


def prefix_range_end(prefix: str) -> str:
    """The base64 ``range_end`` that selects every key starting with ``prefix``.

    etcd's convention: the prefix with its last byte incremented (bytes 0xff dropped first); the
    empty prefix, or one of only 0xff bytes, becomes ``\\0`` which means "to the end of the keyspace".
    """
    raw = bytearray(key_bytes(prefix))
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return encode_key(b"\0")
    raw[-1] += 1
    return encode_key(bytes(raw))


def as_int(field: Any) -> int:
    """int64 fields arrive as JSON strings (or are left out when zero)."""
    return int(field) if field not in (None, "") else 0


def kv_from_json(data: dict[str, Any]) -> KV:
    return KV(
        key=decode_key(data.get("key")),
        value=decode_bytes(data.get("value")),
        create_revision=as_int(data.get("create_revision")),
        mod_revision=as_int(data.get("mod_revision")),
        version=as_int(data.get("version")),
        lease=as_int(data.get("lease")),
    )
