"""Selectors over identity labels: source-aware endpoint selectors and CIDR selectors.

An identity's labels are a mapping ``"source:key" -> value`` (``"k8s:app": "web"``,
``"reserved:host": ""``, ``"cidr:10.0.0.0/8": ""``). Selector keys carry a source too; a key
without one (or ``any:``) matches that key from any source, ``$host`` is ``reserved:host``.
A CIDR selector matches identities whose most specific ``cidr:`` label lies inside its prefix and
outside every ``except``; a ``/0`` prefix also matches the world identities.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from membrane.model.labels import CILIUM_SOURCES, LabelSelector, Requirement

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
NAMESPACE_KEY = "io.kubernetes.pod.namespace"
NAMESPACE_LABELS_PREFIX = "io.cilium.k8s.namespace.labels."
_WORLD = {4: ("reserved:world", "reserved:world-ipv4"), 6: ("reserved:world", "reserved:world-ipv6")}


def normalize_key(key: str) -> str:
    """``app`` -> ``any:app``; ``$host`` -> ``reserved:host``; ``k8s:app`` stays."""
    if key.startswith("$"):
        return "reserved:" + key[1:]
    source, colon, rest = key.partition(":")
    if colon and source in CILIUM_SOURCES:
        return key
    return "any:" + key


def split_key(key: str) -> tuple[str, str]:
    """A normalised key as (source, bare key)."""
    source, _, bare = key.partition(":")
    return source, bare


def parse_cidr_label(key: str) -> Network | None:
    """``cidr:10.0.0.0/8`` (IPv6 written with ``-`` for ``:``) -> the network; None otherwise."""
    if not key.startswith("cidr:"):
        return None
    text = key[5:]
    if "/" in text and ":" not in text and "-" in text:
        text = text.replace("-", ":")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


@dataclass(frozen=True)
class IdentityLabels:
    """An identity's labels prepared for matching (every key also readable as ``any:<key>``)."""

    labels: Mapping[str, str]
    view: Mapping[str, str] = field(repr=False, compare=False, default_factory=dict)
    cidr: Network | None = field(repr=False, compare=False, default=None)

    @classmethod
    def of(cls, labels: Mapping[str, str]) -> IdentityLabels:
        view: dict[str, str] = {}
        cidr: Network | None = None
        for key in sorted(labels, key=lambda k: (not k.startswith("k8s:"), k)):
            value = labels[key]
            source, colon, bare = key.partition(":")
            if not colon:
                source, bare = "unspec", key
            view[f"{source}:{bare}"] = value
            view.setdefault(f"any:{bare}", value)
            net = parse_cidr_label(key)
            if net is not None and (cidr is None or net.prefixlen > cidr.prefixlen):
                cidr = net
        return cls(dict(labels), view, cidr)


@dataclass(frozen=True)
class EndpointSelector:
    """A label selector over identity labels; keys normalised with their source."""

    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def from_label_selector(cls, sel: LabelSelector, *, default_source: str = "") -> EndpointSelector:
        """``default_source`` (``k8s``) replaces a missing source (NetworkPolicy keys are k8s labels)."""
        reqs = [Requirement(k, "In", (v,)) for k, v in sel.match_labels] + list(sel.match_expressions)
        out = []
        for r in reqs:
            key = normalize_key(r.key)
            if default_source and key.startswith("any:") and not r.key.startswith("any:"):
                key = f"{default_source}:{key[4:]}"
            out.append(Requirement(key, r.operator, tuple(sorted(r.values))))
        return cls.of(out)

    @classmethod
    def of(cls, requirements: Iterable[Requirement]) -> EndpointSelector:
        return cls(tuple(sorted(set(requirements), key=lambda r: (r.key, r.operator, r.values))))

    def with_requirement(self, req: Requirement) -> EndpointSelector:
        return EndpointSelector.of((*self.requirements, req))

    def without_bare_key(self, bare: str) -> EndpointSelector:
        return EndpointSelector.of(r for r in self.requirements if split_key(r.key)[1] != bare)

    def mentions(self, bare: str = "", *, prefix: str = "", source: str = "") -> bool:
        """Whether a requirement uses bare key ``bare``, a bare key starting ``prefix``, or ``source``."""
        for r in self.requirements:
            src, key = split_key(r.key)
            if (bare and key == bare) or (prefix and key.startswith(prefix)) or (source and src == source):
                return True
        return False

    def matches(self, identity: IdentityLabels) -> bool:
        return all(r.matches(identity.view) for r in self.requirements)

    def __hash__(self) -> int:
        # Selectors key every cache and index dict: hash the requirements once, not per lookup.
        found: int | None = self.__dict__.get("_hash")
        if found is None:
            found = hash(self.requirements)
            object.__setattr__(self, "_hash", found)
        return found

    def __getstate__(self) -> dict[str, object]:
        # string hashes differ between interpreters: never carry the cached one along
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements) or "<all>"


@dataclass(frozen=True)
class CIDRSelector:
    """``cidr`` minus ``excepts``: selects CIDR identities (and world for a /0)."""

    cidr: Network
    excepts: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, cidr: str, excepts: Iterable[str] = ()) -> CIDRSelector:
        nets = tuple(sorted({ipaddress.ip_network(e, strict=False) for e in excepts}, key=str))
        return cls(ipaddress.ip_network(cidr, strict=False), nets)

    def prefixes(self) -> tuple[Network, ...]:
        """Every prefix the ipcache needs a CIDR identity for so this selector can be enforced."""
        return (self.cidr, *self.excepts)

    def matches(self, identity: IdentityLabels) -> bool:
        net = identity.cidr
        if net is None:
            return self.cidr.prefixlen == 0 and any(k in identity.labels for k in _WORLD[self.cidr.version])
        if net.version != self.cidr.version or not net.subnet_of(self.cidr):  # type: ignore[arg-type]
            return False
        return not any(net.version == e.version and net.subnet_of(e) for e in self.excepts)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return str(self.cidr) + "".join(f" except {e}" for e in self.excepts)


Selector = EndpointSelector | CIDRSelector


def cidr_candidate(identity: IdentityLabels) -> bool:
    """Whether some CIDR selector could match ``identity`` (it has a ``cidr:`` or a world label)."""
    return identity.cidr is not None or any(k in identity.labels for keys in _WORLD.values() for k in keys)
