"""Keep one etcd lease alive from a background thread, granting a new one when it is lost.

Keys that must vanish when their owner dies (a node's record, its ipcache entries) are attached to
the lease. ``on_grant(lease_id)`` is called from the keeper's thread after every grant, the first
included, so the owner (re-)writes its keys under the current lease in one place.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from membrane.store.errors import LeaseNotFound, StoreError

log = logging.getLogger(__name__)


class LeaseClient(Protocol):
    def lease_grant(self, ttl: int) -> int: ...
    def lease_keepalive_once(self, lease_id: int) -> int: ...
    def lease_revoke(self, lease_id: int) -> bool: ...


class LeaseKeeper:
    def __init__(self, client: LeaseClient, ttl: int, on_grant: Callable[[int], None] | None = None,
                 interval: float | None = None, retry: float = 0.5, name: str = "lease") -> None:
        """``client`` is an EtcdClient (anything with lease_grant/keepalive/revoke). ``interval``
        between keep-alives defaults to a third of the TTL."""
        if ttl <= 0:
            raise ValueError(f"{name}: ttl must be positive, got {ttl}")
        self._client = client
        self.ttl = ttl
        self.interval = interval if interval is not None else max(ttl / 3.0, 0.2)
        self.retry = retry
        self.name = name
        self._on_grant = on_grant
        self._lease_id = 0
        self._pending_callback = False
        self._lock = threading.Lock()
        self._granted = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.grants = 0
        self.healthy = False
        self.last_error = ""
        self.last_renewal = 0.0

    @property
    def lease_id(self) -> int:
        """The current lease id, 0 until the first grant."""
        with self._lock:
            return self._lease_id

    def start(self) -> LeaseKeeper:
        if self._thread is not None:
            raise RuntimeError(f"{self.name}: already started")
        self._thread = threading.Thread(target=self._run, name=f"lease-keeper-{self.name}", daemon=True)
        self._thread.start()
        return self

    def wait_granted(self, timeout: float) -> int:
        """Block until a lease is held (and on_grant has run); returns its id, 0 on timeout."""
        deadline = time.monotonic() + timeout
        with self._granted:
            while not self._lease_id or self._pending_callback:
                left = deadline - time.monotonic()
                if left <= 0:
                    return 0
                self._granted.wait(left)
            return self._lease_id

    def stop(self, revoke: bool = True, timeout: float = 5.0) -> None:
        """Stop renewing; with ``revoke`` the lease (and every key attached to it) goes at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        lease = self.lease_id
        if revoke and lease:
            try:
                self._client.lease_revoke(lease)
            except StoreError as exc:
                log.warning("%s: revoking lease %x failed: %s", self.name, lease, exc)
        with self._lock:
            self._lease_id = 0
        self.healthy = False

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.lease_id:
                    self._grant()
                elif self._client.lease_keepalive_once(self.lease_id) <= 0:
                    raise LeaseNotFound(f"{self.name}: lease {self.lease_id:x} has expired")
                self.healthy = True
                self.last_error = ""
                self.last_renewal = time.time()
                wait = self.interval
            except LeaseNotFound as exc:
                log.warning("%s: lease %x lost (%s); granting a new one", self.name, self.lease_id, exc)
                with self._lock:
                    self._lease_id = 0
                self.last_error = str(exc)
                continue
            except StoreError as exc:
                self.healthy = False
                self.last_error = str(exc)
                wait = self.retry
            self._stop.wait(wait)

    def _grant(self) -> None:
        lease = self._client.lease_grant(self.ttl)
        with self._lock:
            self._lease_id = lease
            self._pending_callback = True
        self.grants += 1
        try:
            if self._on_grant is not None:
                self._on_grant(lease)
        except StoreError:
            # The owner could not write its keys under the new lease: drop it and start over.
            with self._lock:
                self._lease_id = 0
            self._revoke_quietly(lease)
            raise
        except Exception as exc:  # a bug in the callback must not kill the keeper
            log.exception("%s: on_grant callback failed", self.name)
            self.last_error = f"on_grant callback failed: {exc}"
        finally:
            with self._granted:
                self._pending_callback = False
                self._granted.notify_all()

    def _revoke_quietly(self, lease: int) -> None:
        try:
            self._client.lease_revoke(lease)
        except StoreError:
            pass
