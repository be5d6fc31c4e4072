"""Per-endpoint policy resolution: the rules selecting an endpoint turned into map entries.

Semantics (reference §3.1-3.5): in ``default`` enforcement mode a direction allows everything
until a rule selecting the endpoint in that direction asks for default-deny (allow or deny rules
alike, unless ``enableDefaultDeny`` opts out); ``always`` enforces both directions, ``never``
none. Deny entries win over allows; a rule without ``toPorts``/``icmps`` covers every port and
protocol, one with ports only those; a rule without peers but with ports covers every peer.
Named ports resolve against the destination: the endpoint itself for ingress, the peer for egress
(every number the name has at that peer identity, see :mod:`membrane.policy.namedports`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType

from membrane.policy.l7 import resolve_l7
from membrane.policy.mapstate import (
    ANY_PORT_PROTOCOLS,
    PROTO_ANY,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTOCOL_NUMBERS,
    PolicyEntry,
    ResolvedPolicy,
    normalize,
    port_range_prefixes,
    verdict,
)
from membrane.policy.namedports import NamedPorts, PeerNamedPorts, PortSet, peer_port_numbers
from membrane.policy.rules import EGRESS, INGRESS, PortSpec, Rule
from membrane.policy.selectorcache import SelectorCache

__all__ = [
    "POLICY_MODES", "NamedPorts", "PeerNamedPorts", "PolicyEntry", "ResolvedPolicy", "resolve_endpoint",
    "resolve_selected", "selecting_rules", "verdict",
]

POLICY_MODES = ("default", "always", "never")
_EMPTY: Mapping = MappingProxyType({})


def selecting_rules(identity: int, rules: Iterable[Rule], cache: SelectorCache) -> list[Rule]:
    """The rules whose subject selects ``identity``."""
    return [r for r in rules if cache.selects(r.subject, identity)]


def resolve_endpoint(
    identity: int,
    rules: Iterable[Rule],
    cache: SelectorCache,
    *,
    entities: Mapping[str, Iterable[int]] = _EMPTY,
    mode: str = "default",
    named_ports: NamedPorts = _EMPTY,
    peer_named_ports: PeerNamedPorts = _EMPTY,
) -> ResolvedPolicy:
    """The policy of the endpoint with security identity ``identity`` (known to ``cache``).

    ``rules``: every rule in force (scanned for the ones selecting ``identity``; a
    :class:`~membrane.policy.repository.PolicyRepository` finds them without a scan, see its
    ``resolve``). ``entities``: entity name -> identities (``all`` and ``none`` need no entry);
    ``named_ports``: this endpoint's container ports (name -> (port, protocol)); ``peer_named_ports``:
    peer identity -> name -> every (port, protocol) it stands for there, for egress rules naming ports
    (built by :func:`membrane.policy.namedports.peer_named_ports`).
    """
    _check_mode(mode)
    if mode == "never":
        return ResolvedPolicy(False, False)
    return resolve_selected(identity, selecting_rules(identity, rules, cache), cache, entities=entities, mode=mode,
                            named_ports=named_ports, peer_named_ports=peer_named_ports)


def resolve_selected(
    identity: int,
    selecting: Sequence[Rule],
    cache: SelectorCache,
    *,
    entities: Mapping[str, Iterable[int]] = _EMPTY,
    mode: str = "default",
    named_ports: NamedPorts = _EMPTY,
    peer_named_ports: PeerNamedPorts = _EMPTY,
) -> ResolvedPolicy:
    """:func:`resolve_endpoint` given exactly the rules whose subject selects ``identity`` (any order)."""
    _check_mode(mode)
    if mode == "never":
        return ResolvedPolicy(False, False)
    enforced = {
        d: mode == "always" or any(r.default_deny for r in selecting if r.direction == d) for d in (INGRESS, EGRESS)
    }
    entries: set[PolicyEntry] = set()

    def own(_peer: int, name: str) -> PortSet:
        hit = named_ports.get(name)
        return frozenset(((hit[0], hit[1].upper()),)) if hit is not None else frozenset()

    def peers(peer: int, name: str) -> PortSet:
        return peer_port_numbers(peer_named_ports, peer, name)

    def lookup_of(rule: Rule) -> NameLookup:
        return own if rule.direction == INGRESS else peers

    for rule in selecting:
        if not rule.deny and not enforced[rule.direction]:
            continue  # allows change nothing while the direction allows everything
        lookup = lookup_of(rule)
        by_peer = any(spec.name for spec in rule.ports or ()) and rule.direction == EGRESS
        fixed = None if by_peer else _l4(rule, 0, lookup)  # the same L4 for every peer
        for peer in _peer_identities(rule, cache, entities):
            for protocol, port, plen in fixed if fixed is not None else _l4(rule, peer, lookup):
                entries.add(PolicyEntry(peer, rule.direction, protocol, port, plen, rule.deny))
    allows = [r for r in selecting if not r.deny and enforced[r.direction]]
    l7 = resolve_l7(allows, lambda r: _peer_identities(r, cache, entities),
                    lambda r, peer: _l4(r, peer, lookup_of(r)),
                    lambda spec, r, peer: _expand(spec, peer, lookup_of(r))) if any(r.l7 for r in allows) else frozenset()
    return ResolvedPolicy(enforced[INGRESS], enforced[EGRESS], normalize(entries), l7)


def _check_mode(mode: str) -> None:
    if mode not in POLICY_MODES:
        raise ValueError(f"unknown policy enforcement mode {mode!r} (known: {', '.join(POLICY_MODES)})")


def _peer_identities(rule: Rule, cache: SelectorCache, entities: Mapping[str, Iterable[int]]) -> set[int]:
    if rule.l3_wildcard or "all" in rule.entities:
        return {0}
    ids: set[int] = set()
    for sel in rule.peer_selectors:
        ids |= cache.selections(sel)
    for name in rule.entities:
        ids.update(entities.get(name, ()))
    return {0} if 0 in ids else ids


NameLookup = Callable[[int, str], PortSet]  # (peer identity, port name) -> (port, protocol) pairs


def _l4(rule: Rule, peer: int, lookup: NameLookup) -> set[tuple[int, int, int]]:
    """(protocol, port, prefix length) triples the rule covers towards ``peer``."""
    if rule.l4_all:
        return {(PROTO_ANY, 0, 0)}
    out: set[tuple[int, int, int]] = set()
    for spec in rule.ports or ():
        for protocol, start, end in _expand(spec, peer, lookup):
            if protocol == PROTO_ANY:
                out.add((PROTO_ANY, 0, 0))
                continue
            for port, plen in port_range_prefixes(start, end):
                out.add((protocol, port, plen))
    for icmp in rule.icmps:
        out.add((PROTO_ICMPV6 if icmp.family == "IPv6" else PROTO_ICMP, icmp.type, 16))
    return out


def _expand(spec: PortSpec, peer: int, lookup: NameLookup) -> list[tuple[int, int, int]]:
    """(protocol number, first port, last port) for one PortSpec; a named port through ``lookup``."""
    if spec.name:
        return [(PROTOCOL_NUMBERS[proto], port, port) for port, proto in sorted(lookup(peer, spec.name))
                if spec.protocol in ("ANY", proto) and proto in PROTOCOL_NUMBERS]
    if spec.protocol == "ANY":
        if spec.port == 0:
            return [(PROTO_ANY, 0, 0)]
        return [(p, spec.port, spec.end_port or spec.port) for p in ANY_PORT_PROTOCOLS]
    return [(PROTOCOL_NUMBERS[spec.protocol], spec.port, spec.end_port or spec.port)]
