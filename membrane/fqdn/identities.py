"""IPs learned from DNS answers -> node-local identities that ``toFQDNs`` selectors select.

A ``toFQDNs`` selector (canonical text ``k``, :func:`membrane.model.fqdn.selector_key`) selects the
identities carrying the label ``fqdn:k``. Every IP in the DNS cache whose names some selector in force
matches gets its own identity labelled ``cidr:<ip>/32``, ``fqdn:<k>`` for each matching selector and
``reserved:world`` (as Cilium before per-label-set identities: a CIDR rule covering the IP and the
``world`` entity still select it), and the ipcache maps ``<ip>/32`` to it. The numbers come from a
node-local range of their own, so they never meet the CIDR identities of policies. An IP keeps its
number while some selector selects it; its labels follow the selectors.

Pure: the caller folds :class:`Changes` into the selector cache and the ipcache (identities first).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from membrane.fqdn.cache import DNSCache
from membrane.model.fqdn import key_matches

FQDN_SOURCE = "fqdn"
# node-local identities are 1<<24 | n; the FQDN ones take the upper half of n (CIDR ones start at 1)
FQDN_MIN_IDENTITY = (1 << 24) | 0x800000
FQDN_MAX_IDENTITY = (1 << 24) | 0xFFFFFF

Labels = Mapping[str, str]


def fqdn_label(key: str) -> str:
    return f"{FQDN_SOURCE}:{key}"


def ip_labels(ip: str, keys: Iterable[str]) -> dict[str, str]:
    """The labels of an FQDN identity: ``cidr:<ip>/<32|128>``, ``fqdn:<key>``…, ``reserved:world``."""
    addr = ipaddress.ip_address(ip)
    host = f"{addr}/{addr.max_prefixlen}".replace(":", "-")
    return {f"cidr:{host}": "", **{fqdn_label(k): "" for k in sorted(keys)}, "reserved:world": ""}


@dataclass
class Changes:
    """What one :meth:`FQDNIdentities.update` changed: identities to upsert (number -> labels) before
    the ipcache gets their IPs, identities to drop after the ipcache lost them."""

    upserted: dict[int, dict[str, str]] = field(default_factory=dict)
    removed: set[int] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.upserted or self.removed)


class FQDNIdentities:
    """IP -> (identity, selector keys) for the IPs some selector in force selects."""

    def __init__(self, min_id: int = FQDN_MIN_IDENTITY, max_id: int = FQDN_MAX_IDENTITY) -> None:
        if not 0 < min_id <= max_id:
            raise ValueError(f"FQDN identity range {min_id}..{max_id} is empty")
        self._min, self._max = min_id, max_id
        self._by_ip: dict[str, tuple[int, frozenset[str]]] = {}
        self._used: set[int] = set()
        self._hint = min_id

    def update(self, keys: Iterable[str], cache: DNSCache) -> Changes:
        """Bring the identities to the selectors ``keys`` in force and the names in ``cache``."""
        keys = frozenset(keys)
        want: dict[str, frozenset[str]] = {}
        if keys:
            for ip in cache.ips():
                names = cache.names_of(ip)
                selected = frozenset(k for k in keys if any(key_matches(k, n) for n in names))
                if selected:
                    want[ip] = selected
        out = Changes()
        for ip in [ip for ip in self._by_ip if ip not in want]:
            n, _keys = self._by_ip.pop(ip)
            self._used.discard(n)
            self._hint = min(self._hint, n)
            out.removed.add(n)
        for ip, selected in want.items():
            old = self._by_ip.get(ip)
            if old is not None and old[1] == selected:
                continue
            n = old[0] if old is not None else self._allocate()
            self._by_ip[ip] = (n, selected)
            out.upserted[n] = ip_labels(ip, selected)
        return out

    def _allocate(self) -> int:
        n = self._hint
        while n <= self._max:
            if n not in self._used:
                self._used.add(n)
                self._hint = n + 1
                return n
            n += 1
        raise OverflowError(f"no free FQDN identity in {self._min}..{self._max}")

    def prefixes(self) -> dict[str, int]:
        """``<ip>/32`` -> identity: what the ipcache must hold for the selected IPs."""
        out = {}
        for ip, (n, _keys) in self._by_ip.items():
            addr = ipaddress.ip_address(ip)
            out[f"{addr}/{addr.max_prefixlen}"] = n
        return out

    def identity_of(self, ip: str) -> int | None:
        found = self._by_ip.get(ip)
        return None if found is None else found[0]

    def selectors_of(self, ip: str) -> frozenset[str]:
        found = self._by_ip.get(ip)
        return frozenset() if found is None else found[1]

    def labels(self) -> dict[int, dict[str, str]]:
        return {n: ip_labels(ip, keys) for ip, (n, keys) in self._by_ip.items()}
