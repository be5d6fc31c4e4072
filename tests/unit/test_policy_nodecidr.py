"""policyCIDRMatchMode=[nodes] (membrane.policy.nodecidr): which node IPs get CIDR identities, and that CIDR
selectors then select them while entities still see nodes."""

from __future__ import annotations

import ipaddress

from membrane.identity.labels import LabelSet
from membrane.identity.node_cidr import host_labels_with_cidr, remote_node_labels
from membrane.identity.reserved import entity_identities, reserved_labels
from membrane.policy.nodecidr import covered_remote_nodes
from membrane.policy.selector import CIDRSelector, IdentityLabels

NODES = {"192.168.10.100": True, "192.168.10.101": False, "192.168.20.102": False}
NODE_ID = (1 << 24) | 7


def nets(*texts: str) -> list[ipaddress.IPv4Network]:
    return [ipaddress.IPv4Network(t) for t in texts]


def labels_of(ls: LabelSet) -> IdentityLabels:
    return IdentityLabels.of({f"{lb.source}:{lb.key}": lb.value for lb in ls})


def test_only_remote_node_ips_inside_a_policy_prefix_are_covered() -> None:
    assert covered_remote_nodes(NODES, nets("192.168.10.0/24")) == {"192.168.10.101"}
    assert covered_remote_nodes(NODES, nets("192.168.0.0/16")) == {"192.168.10.101", "192.168.20.102"}
    assert covered_remote_nodes(NODES, nets("203.0.113.0/24")) == set()
    assert covered_remote_nodes(NODES, []) == set()


def test_a_node_identity_is_selected_by_cidr_with_excepts_and_stays_a_remote_node() -> None:
    node = labels_of(remote_node_labels("192.168.10.101"))
    assert CIDRSelector.parse("192.168.10.0/24").matches(node)
    assert CIDRSelector.parse("192.168.10.101/32").matches(node)
    assert not CIDRSelector.parse("192.168.10.0/24", ["192.168.10.101/32"]).matches(node)
    assert not CIDRSelector.parse("10.0.0.0/8").matches(node)
    ids = {NODE_ID: remote_node_labels("192.168.10.101")}
    assert NODE_ID in entity_identities("remote-node", ids)
    assert NODE_ID not in entity_identities("world", ids)


def test_the_host_identity_gets_its_node_ip_cidr_only_when_covered() -> None:
    base = reserved_labels(1)
    assert host_labels_with_cidr(base, None) == base
    host = labels_of(host_labels_with_cidr(base, "192.168.10.100"))
    assert CIDRSelector.parse("192.168.10.100/32").matches(host)
    assert not CIDRSelector.parse("192.168.10.100/32").matches(labels_of(base))
    assert "reserved:host" in host.labels
