"""The DNS proxy's decisions (cilium-semantics §4.2), apart from its sockets.

A query from an endpoint whose port has ``dns:`` rules is allowed when one of the rules'
``matchName``/``matchPattern`` selects its name; an allowed query goes to the server the pod asked,
a denied one is answered by the proxy (REFUSED, or NXDOMAIN). Before an allowed answer is released to
the pod, its names and addresses go to the ``learn`` hook (the policy controller's ``learn_dns``).
Each step yields an L7 record for Hubble: ``dns-request proxy FORWARDED|DROPPED`` and
``dns-response proxy FORWARDED``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from membrane.fqdn.dnsmessage import (
    RCODE_TEXT,
    REFUSED,
    Answer,
    MalformedDNS,
    Query,
    parse_answer,
    parse_query,
    reject,
)
from membrane.model.fqdn import key_matches, selector_key

FORWARDED, DROPPED = "FORWARDED", "DROPPED"
REQUEST, RESPONSE = "REQUEST", "RESPONSE"


def rule_keys(rules: Iterable[Mapping[str, str]]) -> frozenset[str]:
    """``dns:`` rule items (``{matchName|matchPattern}``) as selector keys."""
    return frozenset(selector_key(dict(r)) for r in rules)


def query_allowed(name: str, keys: Iterable[str]) -> bool:
    return any(key_matches(k, name) for k in keys)


@dataclass(frozen=True)
class DNSRecord:
    """One L7 DNS observation (Hubble ``l7.dns`` with ``observation_source: proxy``)."""

    type: str  # REQUEST | RESPONSE
    verdict: str  # FORWARDED | DROPPED
    query: str
    qtypes: tuple[str, ...]
    ips: tuple[str, ...] = ()
    ttl: int = 0
    cnames: tuple[str, ...] = ()
    rcode: int = 0
    rrtypes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The ``l7.dns`` object of Hubble's flow JSON."""
        out: dict[str, Any] = {"query": self.query, "observation_source": "proxy", "qtypes": list(self.qtypes)}
        if self.type == RESPONSE:
            out.update(ips=list(self.ips), ttl=self.ttl, cnames=list(self.cnames), rcode=self.rcode,
                       rrtypes=list(self.rrtypes))
        return out

    def summary(self) -> str:
        """Hubble's text (``DNS Query one.one.one.one. A``, ``DNS Answer "1.1.1.1" TTL: 300 (Proxy … A)``)."""
        qt = ",".join(self.qtypes)
        if self.type == REQUEST:
            return f"DNS Query {self.query} {qt}"
        if self.rcode:
            return f"DNS Answer RCode: {RCODE_TEXT.get(self.rcode, str(self.rcode))} TTL: {self.ttl} " \
                   f"(Proxy {self.query} {qt})"
        cn = f' CNAMEs: "{",".join(self.cnames)}"' if self.cnames else ""
        return f'DNS Answer "{",".join(self.ips)}"{cn} TTL: {self.ttl} (Proxy {self.query} {qt})'


@dataclass
class QueryDecision:
    query: Query | None  # None: malformed (dropped without an answer)
    forward: bool
    reply: bytes | None = None  # the proxy's own answer (denied queries)
    record: DNSRecord | None = None
    error: str = ""


def decide_query(wire: bytes, keys: Iterable[str], reject_code: int = REFUSED) -> QueryDecision:
    """What to do with a query the pod sent: forward it, answer it REFUSED/NXDOMAIN, or drop it."""
    try:
        q = parse_query(wire)
    except MalformedDNS as exc:
        return QueryDecision(None, False, error=str(exc))
    ok = query_allowed(q.name, keys)
    record = DNSRecord(REQUEST, FORWARDED if ok else DROPPED, q.name, q.qtypes)
    if ok:
        return QueryDecision(q, True, record=record)
    return QueryDecision(q, False, reply=reject(q, reject_code), record=record)


@dataclass
class AnswerDecision:
    answer: Answer | None  # None: malformed (not released)
    record: DNSRecord | None = None
    error: str = ""
    learned: list[tuple[str, tuple[str, ...], int]] = field(default_factory=list)  # (name, ips, ttl)


def decide_answer(wire: bytes, query: Query) -> AnswerDecision:
    """An upstream answer to an allowed query: what to learn (every name of the chain -> the addresses)
    before it is released, and its record. A malformed or mismatched answer is not released."""
    try:
        a = parse_answer(wire, query)
    except MalformedDNS as exc:
        return AnswerDecision(None, error=str(exc))
    record = DNSRecord(RESPONSE, FORWARDED, a.name, a.qtypes, a.ips, a.ttl, a.cnames, a.rcode, a.rrtypes)
    learned = [(name, a.ips, a.ttl) for name in a.names] if a.ips and a.rcode == 0 else []
    return AnswerDecision(a, record, learned=learned)
