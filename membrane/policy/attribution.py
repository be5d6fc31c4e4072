"""Which policies decided a verdict: the rules behind one policy-verdict event, for Hubble.

Hubble flows name the (C)CNPs and NetworkPolicies that allowed or denied them (``egress_allowed_by``,
``ingress_denied_by`` …, printed by ``observe --print-policy-names``). The datapath only says which
map entry matched; this module answers the question again from the rules: those that select the
endpoint, point the same way, have the verdict's kind (allow or deny), name the peer identity (or any
peer) and cover the packet's protocol and port. A default deny (nothing allowed the packet) is
attributed to no policy, as in Cilium.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from membrane.policy.mapstate import PolicyEntry
from membrane.policy.namedports import NamedPorts, PeerNamedPorts, peer_port_numbers
from membrane.policy.resolve import NameLookup, rule_peer_identities, rule_ports
from membrane.policy.rules import EGRESS, INGRESS, Origin, Rule
from membrane.policy.selectorcache import SelectorCache

_EMPTY: Mapping = MappingProxyType({})
POLICY_LABEL_PREFIX = "k8s:io.cilium.k8s.policy"


@dataclass(frozen=True)
class Attribution:
    """The policies a verdict is attributed to (sorted, each once) and their ``log`` values."""

    origins: tuple[Origin, ...] = ()
    logs: tuple[str, ...] = ()


def attribute(
    selecting: Iterable[Rule],
    cache: SelectorCache,
    *,
    direction: str,
    peer: int,
    protocol: int,
    port: int,
    deny: bool,
    entities: Mapping[str, Iterable[int]] = _EMPTY,
    named_ports: NamedPorts = _EMPTY,
    peer_named_ports: PeerNamedPorts = _EMPTY,
) -> Attribution:
    """The origins of the rules among ``selecting`` (the rules whose subject selects the endpoint)
    that match a packet to/from ``peer`` with ``protocol``/``port`` in ``direction``, allow rules for
    an allowed packet and deny rules for a denied one."""
    if direction not in (INGRESS, EGRESS):
        raise ValueError(f"direction must be {INGRESS} or {EGRESS}, not {direction!r}")

    def own(_peer: int, name: str) -> frozenset[tuple[int, str]]:
        hit = named_ports.get(name)
        return frozenset(((hit[0], hit[1].upper()),)) if hit is not None else frozenset()

    def peers(p: int, name: str) -> frozenset[tuple[int, str]]:
        return peer_port_numbers(peer_named_ports, p, name)

    lookup: NameLookup = own if direction == INGRESS else peers
    origins: dict[Origin, None] = {}
    logs: dict[str, None] = {}
    for rule in selecting:
        if rule.direction != direction or rule.deny != deny:
            continue
        ids = rule_peer_identities(rule, cache, entities)
        if 0 not in ids and peer not in ids:
            continue
        if not any(PolicyEntry(peer, direction, proto, p, plen).covers(protocol, port)
                   for proto, p, plen in rule_ports(rule, peer, lookup)):
            continue
        origins[rule.origin] = None
        if rule.log:
            logs[rule.log] = None
    return Attribution(tuple(sorted(origins, key=str)), tuple(logs))


def policy_labels(origin: Origin, uid: str = "") -> Sequence[str]:
    """The labels Cilium gives a policy's rules (``derived-from``, ``name``, ``namespace``, ``uid``)."""
    out = [f"{POLICY_LABEL_PREFIX}.derived-from={origin.kind}", f"{POLICY_LABEL_PREFIX}.name={origin.name}"]
    if origin.namespace:
        out.append(f"{POLICY_LABEL_PREFIX}.namespace={origin.namespace}")
    if uid:
        out.append(f"{POLICY_LABEL_PREFIX}.uid={uid}")
    return out
