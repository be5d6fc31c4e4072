"""The agent's translation of resolved policy entries into BPF policy-map rules."""

from __future__ import annotations

from membrane.agent.policy_sync import map_rules
from membrane.datapath.maps.policy import DIR_EGRESS, DIR_INGRESS, PolicyRule
from membrane.policy.mapstate import PolicyEntry, ResolvedPolicy


def test_prefix_entries_become_port_ranges_and_localhost_is_allowed() -> None:
    resolved = ResolvedPolicy(True, True, frozenset({
        PolicyEntry(257, "ingress", 6, 80, 16),          # exactly 80/TCP
        PolicyEntry(257, "ingress", 17, 1024, 6),        # 1024-2047/UDP (a /6 port prefix)
        PolicyEntry(0, "egress", 0),                     # anything to anyone
        PolicyEntry(300, "ingress", 6, 0, 0, deny=True),  # deny every TCP port from 300
    }))
    rules = set(map_rules(7, resolved))
    assert rules == {
        PolicyRule(7, DIR_INGRESS, 257, 6, 80, 0),
        PolicyRule(7, DIR_INGRESS, 257, 17, 1024, 2047),
        PolicyRule(7, DIR_EGRESS, 0, 0, 0, 0),
        PolicyRule(7, DIR_INGRESS, 300, 6, 0, 0, deny=True),
        PolicyRule(7, DIR_INGRESS, 1),  # allow-localhost: the node reaches its pods
    }


def test_no_localhost_allow_when_ingress_is_not_enforced() -> None:
    assert map_rules(3, ResolvedPolicy(False, True, frozenset())) == []
