"""Errors of the cluster store; every message names the endpoint (and key, where there is one)."""

from __future__ import annotations


class StoreError(Exception):
    """The store answered, but refused or could not do what was asked."""


class StoreUnavailable(StoreError):
    """The store could not be reached: socket missing, connection refused or reset, timeout, no leader."""


class WatchDisconnected(StoreUnavailable):
    """A watch stream ended without being cancelled (etcd stopped, connection dropped)."""


class RevisionCompacted(StoreError):
    """A watch (or read) asked for a revision etcd has already compacted away.

    ``compact_revision`` is the oldest revision still available; re-list and watch from there.
    """

    def __init__(self, message: str, compact_revision: int) -> None:
        super().__init__(message)
        self.compact_revision = compact_revision


class LeaseNotFound(StoreError):
    """The lease does not exist (it expired or was revoked)."""


class ConflictError(StoreError):
    """A compare-and-swap lost: the object changed since it was read."""


class NotFound(StoreError):
    """The object to update does not exist."""
