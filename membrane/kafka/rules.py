"""``kafka:`` rules (cilium-semantics §2.7): which requests an endpoint may send.

A rule item matches a request when its API keys (``role`` expanded, or the one ``apiKey``; neither: any)
include the request's, its ``apiVersion`` (if set) equals the request's and its ``clientID`` (if set)
equals the request's client id. A request without topics is allowed by any matching item; a request
naming topics is allowed when every one of them is named by a matching item's ``topic`` or some
matching item has no ``topic``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from membrane.kafka.protocol import API_KEYS, Request

ROLES = {
    "produce": frozenset({0, 3, 18}),  # produce, metadata, apiversions
    "consume": frozenset({1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 18}),
}


@dataclass(frozen=True)
class KafkaRule:
    api_keys: frozenset[int] = frozenset()  # empty: any
    api_version: int | None = None
    client_id: str = ""
    topic: str = ""

    @classmethod
    def of(cls, item: Mapping[str, str]) -> KafkaRule:
        """A validated rule item (membrane.model.policy_ports checks the fields)."""
        role = (item.get("role") or "").lower()
        key = (item.get("apiKey") or "").lower()
        if role:
            keys = ROLES[role]
        elif key:
            if key not in API_KEYS:
                raise ValueError(f"unknown Kafka apiKey {key!r}")
            keys = frozenset({API_KEYS[key]})
        else:
            keys = frozenset()
        version = item.get("apiVersion") or ""
        return cls(keys, int(version) if version != "" else None, item.get("clientID") or "",
                   item.get("topic") or "")

    def matches_request(self, req: Request) -> bool:
        """Key, version and client id (the topic is checked per topic by :func:`allowed`)."""
        if self.api_keys and req.api_key not in self.api_keys:
            return False
        if self.api_version is not None and self.api_version != req.api_version:
            return False
        return not self.client_id or self.client_id == req.client_id


def compile_rules(items: Iterable[Mapping[str, str]]) -> tuple[KafkaRule, ...]:
    return tuple(KafkaRule.of(i) for i in items)


def denied_topics(rules: Iterable[KafkaRule], req: Request) -> tuple[str, ...] | None:
    """None when ``req`` is allowed; else the topics that no matching item allows (empty: the request
    itself matches no item)."""
    matching = [r for r in rules if r.matches_request(req)]
    if not matching:
        return req.topic_names
    names = req.topic_names
    if not names or any(not r.topic for r in matching):
        return None
    allowed = {r.topic for r in matching}
    missing = tuple(t for t in names if t not in allowed)
    return missing or None


def allowed(rules: Iterable[KafkaRule], req: Request) -> bool:
    return denied_topics(rules, req) is None
