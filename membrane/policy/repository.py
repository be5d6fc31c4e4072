"""PolicyRepository: the rules in force, grouped by policy, with incremental change tracking.

Every change answers "which endpoint identities may now resolve differently": a policy update
touches the identities its old and new subject selectors select; an identity update touches that
identity and the subjects of rules whose peer selectors gained or lost it. Callers re-resolve only
those endpoints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from membrane.policy.rules import Origin, Rule
from membrane.policy.selector import Selector
from membrane.policy.selectorcache import SelectorCache

_ENTITY_WILDCARDS = ("all", "none")


class PolicyRepository:
    """Policies (origin -> rules) and the selector cache their selectors live in."""

    def __init__(self, cache: SelectorCache | None = None) -> None:
        self.cache = cache if cache is not None else SelectorCache()
        self._policies: dict[Origin, tuple[Rule, ...]] = {}
        self._peer_users: dict[Selector, list[Rule]] = {}

    def rules(self) -> list[Rule]:
        return [r for rules in self._policies.values() for r in rules]

    def policies(self) -> dict[Origin, tuple[Rule, ...]]:
        return dict(self._policies)

    def set_policy(self, origin: Origin, rules: Iterable[Rule]) -> set[int]:
        """Add or replace one policy's rules; returns the identities whose policy may change."""
        new = tuple(rules)
        old = self._policies.get(origin, ())
        affected = self._subjects(old)
        for rule in new:
            self.cache.add_selectors(rule.selectors)
            for sel in rule.peer_selectors:
                self._peer_users.setdefault(sel, []).append(rule)
        self._forget(old)
        if new:
            self._policies[origin] = new
        else:
            self._policies.pop(origin, None)
        return affected | self._subjects(new)

    def delete_policy(self, origin: Origin) -> set[int]:
        return self.set_policy(origin, ())

    def upsert_identity(self, identity: int, labels: Mapping[str, str]) -> set[int]:
        """Add or relabel an identity; returns the identities whose policy may change."""
        return self._touched(identity, self.cache.upsert_identity(identity, labels))

    def remove_identity(self, identity: int) -> set[int]:
        return self._touched(identity, self.cache.remove_identity(identity))

    def _touched(self, identity: int, changed: set[Selector]) -> set[int]:
        affected = {identity}
        rules = [r for sel in changed for r in self._peer_users.get(sel, ())]
        rules += [r for r in self.rules() if any(e not in _ENTITY_WILDCARDS for e in r.entities)]
        return affected | self._subjects(rules)

    def _subjects(self, rules: Iterable[Rule]) -> set[int]:
        out: set[int] = set()
        for sel in {r.subject for r in rules}:
            out |= self.cache.selections(sel)
        return out

    def _forget(self, rules: Iterable[Rule]) -> None:
        for rule in rules:
            self.cache.remove_selectors(rule.selectors)
            for sel in rule.peer_selectors:
                users = self._peer_users.get(sel, [])
                for i, user in enumerate(users):
                    if user is rule:
                        del users[i]
                        break
                if not users:
                    self._peer_users.pop(sel, None)
