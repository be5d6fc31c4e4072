"""etcd v3 client over the JSON gateway (HTTP/1.1 + JSON, base64 keys and values), standard library only.

    client = EtcdClient("unix:///run/membrane/lab/etcd.sock:2379")
    rev = client.put("/a", b"1")
    kvs, rev = client.get_prefix("/")
    with client.watch("/", start_revision=rev + 1) as w:
        for event in w: ...

The CNI path and the agent can use it without a gRPC stack. Every error is a ``StoreError``;
``StoreUnavailable`` means etcd could not be reached. Messages name the endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from membrane.store.errors import (
    ConflictError,
    LeaseNotFound,
    NotFound,
    RevisionCompacted,
    StoreError,
    StoreUnavailable,
    WatchDisconnected,
)
from membrane.store.kv import KV, as_int, encode_key, encode_value, key_bytes, kv_from_json, prefix_range_end
from membrane.store.transport import Transport
from membrane.store.txn import (
    Compare,
    Op,
    OpResponse,
    TxnResult,
    create_revision_eq,
    lease_eq,
    mod_revision_eq,
    txn_request,
    txn_result,
    value_eq,
    version_eq,
)
from membrane.store.watch import Watch, WatchEvent

__all__ = [
    "KV", "Compare", "ConflictError", "EtcdClient", "LeaseNotFound", "NotFound", "Op", "OpResponse",
    "RevisionCompacted", "Status", "StoreError", "StoreUnavailable", "TxnResult", "Watch", "WatchDisconnected",
    "WatchEvent", "create_revision_eq", "lease_eq", "mod_revision_eq", "value_eq", "version_eq",
]

DEFAULT_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Status:
    """What ``/v3/maintenance/status`` says about the member we talk to."""

    version: str
    revision: int
    leader: int
    member_id: int
    raft_index: int
    raft_term: int
    db_size: int


def _header_revision(data: dict[str, Any]) -> int:
    return as_int((data.get("header") or {}).get("revision"))


def _check_key(op: str, key: str) -> None:
    if not key:
        raise ValueError(f"etcd {op}: the key must not be empty")


class EtcdClient:
    """A thread-safe client for one etcd endpoint (``unix:///abs/path`` or ``http://host:port``)."""

    def __init__(self, endpoint: str, timeout: float = 5.0) -> None:
        self._transport = Transport(endpoint, timeout)

    @property
    def endpoint(self) -> str:
        return self._transport.endpoint.url

    @property
    def timeout(self) -> float:
        return self._transport.timeout

    def close(self) -> None:
        """Close pooled connections (open watches are closed by their owners)."""
        self._transport.close()

    def __enter__(self) -> EtcdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EtcdClient({self.endpoint!r})"

    # -- key-value ---------------------------------------------------------------------------

    def get(self, key: str, revision: int | None = None) -> KV | None:
        _check_key("get", key)
        body: dict[str, Any] = {"key": encode_key(key)}
        if revision:
            body["revision"] = str(revision)
        data = self._transport.call("/v3/kv/range", body)
        kvs = data.get("kvs") or []
        return kv_from_json(kvs[0]) if kvs else None

    def get_prefix(self, prefix: str, revision: int | None = None,
                   page_size: int = DEFAULT_PAGE_SIZE) -> tuple[list[KV], int]:
        """Every key under ``prefix`` (sorted by key) and the revision they were read at.

        Large ranges are read in pages pinned to the revision of the first page, so the listing
        is one consistent snapshot.
        """
        end = prefix_range_end(prefix)
        start: bytes = key_bytes(prefix)
        rev = revision or 0
        out: list[KV] = []
        while True:
            body: dict[str, Any] = {"key": encode_key(start) if start else encode_key(b"\0"),
                                    "range_end": end, "limit": str(page_size)}
            if rev:
                body["revision"] = str(rev)
            data = self._transport.call("/v3/kv/range", body)
            if not rev:
                rev = _header_revision(data)
            page = [kv_from_json(kv) for kv in data.get("kvs") or []]
            out.extend(page)
            if not data.get("more") or not page:
                return out, rev
            start = key_bytes(page[-1].key) + b"\0"

    def put(self, key: str, value: bytes | str, lease: int = 0) -> int:
        """Store ``value`` at ``key`` (attached to ``lease`` if non-zero); returns the new revision."""
        _check_key("put", key)
        body: dict[str, Any] = {"key": encode_key(key), "value": encode_value(value)}
        if lease:
            body["lease"] = str(lease)
        return _header_revision(self._transport.call("/v3/kv/put", body))

    def delete(self, key: str) -> int:
        """Delete one key; returns how many keys were deleted (0 or 1)."""
        _check_key("delete", key)
        data = self._transport.call("/v3/kv/deleterange", {"key": encode_key(key)})
        return as_int(data.get("deleted"))

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix``; returns the count."""
        _check_key("delete_prefix", prefix)
        body = {"key": encode_key(prefix), "range_end": prefix_range_end(prefix)}
        return as_int(self._transport.call("/v3/kv/deleterange", body).get("deleted"))

    def txn(self, compare: list[Compare], success: list[Op], failure: list[Op] | None = None) -> TxnResult:
        """If every comparison holds, run ``success``, else ``failure``; all in one atomic step."""
        data = self._transport.call("/v3/kv/txn", txn_request(compare, success, failure or []))
        return txn_result(data)

    def compact(self, revision: int) -> None:
        """Drop history older than ``revision`` (watches from before it then fail with RevisionCompacted)."""
        self._transport.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})

    # -- leases ------------------------------------------------------------------------------

    def lease_grant(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds (etcd may round short TTLs up); returns its id."""
        if ttl <= 0:
            raise ValueError(f"etcd lease_grant: ttl must be positive, got {ttl}")
        data = self._transport.call("/v3/lease/grant", {"TTL": str(ttl)})
        if data.get("error"):
            raise StoreError(f"etcd {self.endpoint}: lease grant: {data['error']}")
        return as_int(data.get("ID"))

    def lease_keepalive_once(self, lease_id: int) -> int:
        """Refresh a lease; returns its TTL in seconds, 0 if it has expired or was revoked."""
        data = self._transport.call("/v3/lease/keepalive", {"ID": str(lease_id)})
        result = data.get("result", data)
        return max(as_int(result.get("TTL")), 0)

    def lease_time_to_live(self, lease_id: int) -> int:
        """Seconds the lease has left, or -1 if it does not exist."""
        data = self._transport.call("/v3/kv/lease/timetolive", {"ID": str(lease_id)})
        return as_int(data.get("TTL")) if "TTL" in data else -1

    def lease_revoke(self, lease_id: int) -> bool:
        """Revoke a lease and delete its keys; False if it no longer existed."""
        try:
            self._transport.call("/v3/lease/revoke", {"ID": str(lease_id)})
        except LeaseNotFound:
            return False
        return True

    # -- cluster -----------------------------------------------------------------------------

    def status(self) -> Status:
        data = self._transport.call("/v3/maintenance/status", {})
        header = data.get("header") or {}
        return Status(
            version=str(data.get("version", "")),
            revision=as_int(header.get("revision")),
            leader=as_int(data.get("leader")),
            member_id=as_int(header.get("member_id")),
            raft_index=as_int(data.get("raftIndex")),
            raft_term=as_int(data.get("raftTerm")),
            db_size=as_int(data.get("dbSize")),
        )

    # -- watches -----------------------------------------------------------------------------

    def watch(self, key: str, start_revision: int | None = None, *, prefix: bool = True,
              prev_kv: bool = False) -> Watch:
        """Watch ``key`` (a prefix unless ``prefix=False``) from ``start_revision`` (default: now).

        Returns once etcd has registered the watch; events from ``start_revision`` on are replayed.
        """
        _check_key("watch", key)
        return Watch(self._transport, key, start_revision, prefix=prefix, prev_kv=prev_kv)
