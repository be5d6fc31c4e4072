"""PolicyRepository: the rules in force, grouped by policy, with incremental change tracking.

Every change answers "which endpoint identities may now resolve differently": a policy update
touches the identities its old and new subject selectors select; an identity update touches that
identity and the subjects of rules whose peer selectors gained or lost it. Callers re-resolve only
those endpoints.

Resolution goes through an index rather than a scan of every rule: rules are filed under their
subject selector, and the selector cache knows which registered selectors select an identity
(:meth:`SelectorCache.selected_by`, kept current as identities and selectors come and go), so the
rules selecting an identity are the rules filed under those selectors — the cost of
:meth:`PolicyRepository.resolve` grows with the rules selecting the identity and their peers, not
with every rule in force.

The peers' named ports (what an egress ``port: http`` means at each peer identity) live here too, so
every caller resolves them the same way: :meth:`PolicyRepository.set_peer_named_ports` answers with
the identities whose rules name a port whose numbers changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType

from membrane.policy.mapstate import ResolvedPolicy
from membrane.policy.namedports import NamedPorts, PeerNamedPorts, changed_names
from membrane.policy.resolve import resolve_selected
from membrane.policy.rules import EGRESS, Origin, Rule
from membrane.policy.selector import CIDRSelector, EndpointSelector, Network, Selector
from membrane.policy.selectorcache import SelectorCache

_ENTITY_WILDCARDS = ("all", "none")
_EMPTY: Mapping = MappingProxyType({})


class _RuleBag:
    """Rules counted by object identity (the same rule object may be filed more than once)."""

    def __init__(self) -> None:
        self._rules: dict[int, tuple[Rule, int]] = {}

    def add(self, rule: Rule) -> None:
        found = self._rules.get(id(rule))
        self._rules[id(rule)] = (rule, found[1] + 1 if found else 1)

    def remove(self, rule: Rule) -> None:
        found = self._rules.get(id(rule))
        if found is None:
            return
        if found[1] > 1:
            self._rules[id(rule)] = (rule, found[1] - 1)
        else:
            del self._rules[id(rule)]

    def __bool__(self) -> bool:
        return bool(self._rules)

    def __iter__(self) -> Iterator[Rule]:
        return (rule for rule, n in self._rules.values() for _ in range(n))


class _RulesBySelector:
    """Selector -> the rules using it."""

    def __init__(self) -> None:
        self._users: dict[Selector, _RuleBag] = {}

    def add(self, sel: Selector, rule: Rule) -> None:
        bag = self._users.get(sel)
        if bag is None:
            bag = self._users[sel] = _RuleBag()
        bag.add(rule)

    def remove(self, sel: Selector, rule: Rule) -> None:
        bag = self._users.get(sel)
        if bag is not None:
            bag.remove(rule)
            if not bag:
                del self._users[sel]

    def get(self, sel: Selector) -> Iterable[Rule]:
        return self._users.get(sel) or ()

    def selectors(self) -> Iterable[Selector]:
        return self._users.keys()


class PolicyRepository:
    """Policies (origin -> rules) and the selector cache their selectors live in."""

    def __init__(self, cache: SelectorCache | None = None) -> None:
        self.cache = cache if cache is not None else SelectorCache()
        self._policies: dict[Origin, tuple[Rule, ...]] = {}
        self._by_subject = _RulesBySelector()
        self._by_peer = _RulesBySelector()
        self._entity_rules = _RuleBag()  # rules naming an entity other than all/none
        self._named_egress = _RuleBag()  # egress rules naming a port (resolved against the peers)
        self._peer_named_ports: PeerNamedPorts = _EMPTY
        self._count = 0

    def rules(self) -> list[Rule]:
        return [r for rules in self._policies.values() for r in rules]

    def rule_count(self) -> int:
        return self._count

    def policies(self) -> dict[Origin, tuple[Rule, ...]]:
        return dict(self._policies)

    def prefixes(self) -> set[Network]:
        """CIDR prefixes (with excepts) the ipcache must hold CIDR identities for (as ``prefixes_used``)."""
        return {p for sel in self._by_peer.selectors() if isinstance(sel, CIDRSelector) for p in sel.prefixes()}

    def fqdn_keys(self) -> set[str]:
        """The ``toFQDNs`` selectors in force (canonical text): the DNS proxy's IPs they select need identities."""
        return {r.key[5:] for sel in self._by_peer.selectors() if isinstance(sel, EndpointSelector)
                for r in sel.requirements if r.key.startswith("fqdn:") and r.operator == "Exists"}

    # resolution -------------------------------------------------------------------------------
    def selecting(self, identity: int) -> list[Rule]:
        """The rules whose subject selects ``identity`` (from the index: no scan of every rule)."""
        by_subject = self._by_subject
        return [r for sel in self.cache.selected_by(identity) for r in by_subject.get(sel)]

    def resolve(
        self,
        identity: int,
        *,
        entities: Mapping[str, Iterable[int]] = _EMPTY,
        mode: str = "default",
        named_ports: NamedPorts = _EMPTY,
    ) -> ResolvedPolicy:
        """What ``resolve_endpoint(identity, self.rules(), self.cache, ..., peer_named_ports=<the
        repository's table>)`` gives, through the index. ``named_ports``: the endpoint's own ports."""
        return resolve_selected(identity, self.selecting(identity), self.cache, entities=entities, mode=mode,
                                named_ports=named_ports, peer_named_ports=self._peer_named_ports)

    def peer_named_ports(self) -> PeerNamedPorts:
        return self._peer_named_ports

    def set_peer_named_ports(self, table: PeerNamedPorts) -> set[int]:
        """Replace the peers' named ports; returns the identities whose policy may change (the subjects
        of egress rules naming a port whose numbers changed)."""
        names = changed_names(self._peer_named_ports, table)
        self._peer_named_ports = table
        if not names:
            return set()
        return self._subjects(r for r in self._named_egress if any(p.name in names for p in r.ports or ()))

    # changes ----------------------------------------------------------------------------------
    def set_policy(self, origin: Origin, rules: Iterable[Rule]) -> set[int]:
        """Add or replace one policy's rules; returns the identities whose policy may change."""
        new = tuple(rules)
        old = self._policies.get(origin, ())
        affected = self._subjects(old)
        for rule in new:
            self.cache.add_selectors(rule.selectors)
            self._file(rule)
        self._forget(old)
        if new:
            self._policies[origin] = new
        else:
            self._policies.pop(origin, None)
        self._count += len(new) - len(old)
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
        rules = [r for sel in changed for r in self._by_peer.get(sel)]
        rules += self._entity_rules
        return affected | self._subjects(rules)

    def _subjects(self, rules: Iterable[Rule]) -> set[int]:
        out: set[int] = set()
        for sel in {r.subject for r in rules}:
            out |= self.cache.selections(sel)
        return out

    def _file(self, rule: Rule) -> None:
        self._by_subject.add(rule.subject, rule)
        for sel in rule.peer_selectors:
            self._by_peer.add(sel, rule)
        if any(e not in _ENTITY_WILDCARDS for e in rule.entities):
            self._entity_rules.add(rule)
        if _names_peer_port(rule):
            self._named_egress.add(rule)

    def _forget(self, rules: Iterable[Rule]) -> None:
        for rule in rules:
            self.cache.remove_selectors(rule.selectors)
            self._by_subject.remove(rule.subject, rule)
            for sel in rule.peer_selectors:
                self._by_peer.remove(sel, rule)
            self._entity_rules.remove(rule)
            self._named_egress.remove(rule)


def _names_peer_port(rule: Rule) -> bool:
    return rule.direction == EGRESS and any(p.name for p in rule.ports or ())
