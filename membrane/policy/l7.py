"""L7 rules in resolved policy: which ports of an endpoint go through a proxy, with which rules.

A ``toPorts`` entry with ``rules:`` (one kind: ``http``, ``dns`` or ``kafka``), or with ``serverNames``
and no ``rules:`` (kind ``tls``, the SNI proxy), makes its ports *redirected*: the map slots allowing
them carry a proxy port (chosen by the agent's proxy manager) and the proxy decides per request. Reference §3.4: an L7 rule on a port also allows the port at L4
(its L4 entries are made as for any allow); a deny at L3/L4 still wins (the datapath never reaches
the proxy); a peer that another rule allows on the same port *without* L7 rules gets "allow all" on
that port (still through the proxy, never refused). Different L7 kinds on one port are an import error
in Cilium; here (one port rule is refused at apply) two policies can still meet on a port: the first
kind seen keeps it and the other rules' peers get no request allowed there (fail closed, never a
resolution error that would stop the node's whole policy). Rules are kept as canonical JSON strings so that resolved policy stays hashable; the proxies
compile them (:mod:`membrane.policy.l7http`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

L7_KINDS = ("http", "dns", "kafka")
TLS_KIND = "tls"  # ``serverNames`` without ``rules:``: the TLS SNI proxy (membrane.proxy.tls_sni)
PROTO_TCP, PROTO_UDP = 6, 17


@dataclass(frozen=True)
class L7PortRule:
    """One ``toPorts`` entry's L7 part: its ports (PortSpec), kind and rules (canonical JSON each)."""

    ports: tuple[Any, ...]
    kind: str
    rules: tuple[str, ...]


@dataclass(frozen=True, order=True)
class L7Entry:
    """Peer ``identity`` (0 = any) on ``port`` (TCP, or UDP for DNS) in ``direction`` may make requests
    matching any of ``rules``; ``rules`` None = every request (allow-all)."""

    direction: str
    protocol: int
    port: int
    identity: int
    kind: str
    rules: tuple[str, ...] | None


@dataclass(frozen=True, order=True)
class Redirect:
    """One proxy redirect of an endpoint: its ``direction`` traffic to ``protocol``/``port``."""

    direction: str
    protocol: int
    port: int
    kind: str


def l7_port_rules(port_rules: Sequence[Mapping[str, Any]], specs: Callable[[Any], tuple[Any, ...]]) -> tuple[
        L7PortRule, ...]:
    """The L7 parts of a rule's validated ``toPorts`` (``specs`` turns ``ports`` into PortSpecs)."""
    out = []
    for pr in port_rules:
        rules = pr.get("rules") or {}
        for kind in L7_KINDS:
            if kind in rules:
                items = tuple(json.dumps(item or {}, sort_keys=True) for item in rules.get(kind) or [])
                out.append(L7PortRule(specs(pr.get("ports")), kind, items))
        if rules.get("l7proto"):  # generic (proxylib) rules: kept, so they are seen as not enforced
            items = tuple(json.dumps(item or {}, sort_keys=True) for item in rules.get("l7") or [])
            out.append(L7PortRule(specs(pr.get("ports")), f"l7proto:{rules['l7proto']}", items))
        if pr.get("serverNames") and not rules:  # with rules: needs terminatingTLS, not enforced
            items = tuple(json.dumps({"serverName": n}) for n in pr["serverNames"])
            out.append(L7PortRule(specs(pr.get("ports")), TLS_KIND, items))
    return tuple(out)


PeersOf = Callable[[Any], set[int]]  # rule -> peer identities ({0} = any)
PortsOf = Callable[[Any, int], set[tuple[int, int, int]]]  # (rule, peer) -> (protocol, port, prefix len)
SpecPorts = Callable[[Any, Any, int], list[tuple[int, int, int]]]  # (PortSpec, rule, peer) -> (proto, first, last)


def resolve_l7(allows: Iterable[Any], peers_of: PeersOf, ports_of: PortsOf, spec_ports: SpecPorts) -> frozenset[L7Entry]:
    """The L7 entries of an endpoint from the allow rules in force (deny rules carry no L7)."""
    allows = list(allows)
    entries: set[L7Entry] = set()
    kinds: dict[tuple[str, int, int], str] = {}
    for rule in allows:
        for l7 in getattr(rule, "l7", ()):
            for peer in peers_of(rule):
                for spec in l7.ports:
                    for protocol, first, last in spec_ports(spec, rule, peer):
                        if first == 0 or last != first:
                            continue  # L7 needs one exact port (validated at apply for literal ports)
                        for proto in _protocols(l7.kind, protocol):
                            if proto not in (PROTO_TCP, PROTO_UDP):
                                continue
                            key = (rule.direction, proto, first)
                            if kinds.setdefault(key, l7.kind) != l7.kind:
                                continue  # two kinds on one port: the first stays, the other's peers get nothing
                            entries.add(L7Entry(rule.direction, proto, first, peer, l7.kind, l7.rules))
    if not entries:
        return frozenset()
    # Peers another rule allows on a redirected port without L7 rules: allow-all there (§3.4).
    for rule in allows:
        l7_specs = {spec for l7 in getattr(rule, "l7", ()) for spec in l7.ports}
        for peer in peers_of(rule):
            for protocol, port, plen in ports_of(rule, peer):
                for (direction, proto, lport), kind in kinds.items():
                    if direction != rule.direction or (protocol and protocol != proto):
                        continue
                    shift = 16 - plen
                    if protocol and plen and (lport >> shift) != (port >> shift):
                        continue
                    if l7_specs and _only_l7(rule, lport, l7_specs):
                        continue
                    entries.add(L7Entry(direction, proto, lport, peer, kind, None))
    return frozenset(entries)


def _protocols(kind: str, protocol: int) -> tuple[int, ...]:
    """The protocols an L7 rule on ``protocol`` (0 = ANY) redirects: DNS both, TLS only TCP."""
    if kind == TLS_KIND:
        return (PROTO_TCP,) if protocol in (0, PROTO_TCP) else ()
    if protocol == 0:
        return (PROTO_TCP, PROTO_UDP) if kind == "dns" else ()
    return (protocol,)


def _only_l7(rule: Any, port: int, l7_specs: set[Any]) -> bool:
    """Whether the rule reaches ``port`` only through its L7 port rules."""
    plain = [spec for spec in rule.ports or () if spec not in l7_specs]
    return not any(spec.port in (0, port) or (spec.end_port and spec.port <= port <= spec.end_port) for spec in plain)


def redirects(entries: Iterable[L7Entry]) -> frozenset[Redirect]:
    return frozenset(Redirect(e.direction, e.protocol, e.port, e.kind) for e in entries)


def rules_for(entries: Iterable[L7Entry], redirect: Redirect, peer: int) -> list[dict[str, Any]] | None:
    """The rules that apply to ``peer`` on ``redirect``: None = allow all; [] = nothing is allowed."""
    out: list[dict[str, Any]] = []
    for e in entries:
        if (e.direction, e.protocol, e.port) != (redirect.direction, redirect.protocol, redirect.port):
            continue
        if e.identity not in (0, peer):
            continue
        if e.rules is None:
            return None
        out.extend(json.loads(r) for r in e.rules)
    return out
