"""toFQDNs in the policy controller: what the DNS proxy lets through becomes identities and map rows.

The DNS proxy calls ``learn_dns`` before it releases an allowed answer; the IPs a ``toFQDNs`` selector
matches get FQDN identities (membrane.fqdn), and one synchronous sync of the policy controller puts
their map rows and then their ipcache entries in place, so the pod's first connection is allowed.
Mixed into :class:`membrane.agent.policy_sync.PolicySync`, whose state it shares.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from membrane.identity.labels import Label, LabelSet

if TYPE_CHECKING:
    from membrane.fqdn.cache import DNSCache
    from membrane.fqdn.identities import FQDNIdentities
    from membrane.identity.local import LocalIdentityAllocator
    from membrane.policy.repository import PolicyRepository


class FQDNPolicy:
    """The DNS-cache side of PolicySync (the attributes below are its)."""

    dns_cache: DNSCache
    fqdn: FQDNIdentities
    repo: PolicyRepository
    cidrs: LocalIdentityAllocator
    _lock: threading.RLock

    def _set_identity(self, n: int, labels: LabelSet, dirty: set[int]) -> None:
        raise NotImplementedError

    def _drop_identity(self, n: int, dirty: set[int]) -> None:
        raise NotImplementedError

    def _sync(self) -> None:
        raise NotImplementedError

    def _fold_fqdns(self, dirty: set[int]) -> None:
        """IPs the DNS cache holds for names a ``toFQDNs`` selector matches get (or lose) their identities."""
        changes = self.fqdn.update(self.repo.fqdn_keys(), self.dns_cache)
        for n, labels in changes.upserted.items():
            self._set_identity(n, LabelSet(Label.parse(k) for k in labels), dirty)
        for n in changes.removed:
            self._drop_identity(n, dirty)

    def _local_prefixes(self) -> dict[str, int]:
        """The policy CIDR prefixes and the FQDN IPs (an IP a selector selects wins its /32)."""
        return {**self.cidrs.prefixes(), **self.fqdn.prefixes()}

    def learn_dns(self, ep_id: int, name: str, ips: list[str], ttl: int, now: float | None = None) -> None:
        """The DNS proxy's hook, called before it releases an allowed answer: record the IPs and, when a
        ``toFQDNs`` selector selects a new one, put its identity's policy map entries and then its ipcache
        entry in place (raises NotApplied if they are not in), so the pod's first connection to an IP it
        just resolved is allowed."""
        with self._lock:
            if self.dns_cache.update(ep_id, name, ips, ttl, time.monotonic() if now is None else now):
                self._sync()

    def expire_dns(self, now: float | None = None, in_use: Callable[[str], bool] = lambda _ip: False) -> int:
        """Drop the DNS cache's expired IPs (those ``in_use`` by a connection wait) and what they selected."""
        with self._lock:
            gone = self.dns_cache.expire(time.monotonic() if now is None else now, in_use)
            if gone:
                self._sync()
            return len(gone)

    def clean_dns(self) -> int:
        """Forget what the DNS proxy learned (``fqdn cache clean``): the FQDN identities go with it."""
        with self._lock:
            n = self.dns_cache.clear()
            self._sync()
            return n
