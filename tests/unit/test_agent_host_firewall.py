"""The policy controller with the host firewall on (fake datapath, no root): the host endpoint's rows land
under HOST_ENDPOINT_ID, mb_host_ep is enforced only once they are in (and cleared when the firewall is
off), node labels decide which host policies apply, and policyCIDRMatchMode=[nodes] gives covered remote
node IPs identities of their own."""

from __future__ import annotations

from typing import Any

import pytest

from membrane.agent.host_firewall import HostFirewall
from membrane.agent.ipcache_sync import NotApplied
from membrane.agent.policy_sync import PolicySync
from membrane.datapath.maps.host_endpoint import HostEndpointState
from membrane.datapath.maps.policy import DIR_INGRESS, PolicySlot
from membrane.policy.hostpolicy import HOST_ENDPOINT_ID
from tests.unit.test_agent_reconcile import FakeMirror, Net, policy_agent

HOST_POLICY = {"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy",
               "metadata": {"name": "w1"},
               "spec": {"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "k8s-w1"}},
                        "ingress": [{"fromEntities": ["world"],
                                     "toPorts": [{"ports": [{"port": "8080", "protocol": "TCP"}]}]}]}}
TO_NODES = {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "n", "namespace": "default"},
            "spec": {"endpointSelector": {"matchLabels": {"app": "web"}},
                     "egress": [{"toCIDR": ["192.168.10.0/24"]}]}}
WORLD_8080 = PolicySlot(HOST_ENDPOINT_ID, DIR_INGRESS, 2, 6, 8080, 16)


class HostEp:
    """mb_host_ep in memory; records every write with the policy slots present at that moment."""

    def __init__(self, net: Net) -> None:
        self.net = net
        self.writes: list[tuple[HostEndpointState, set[PolicySlot]]] = []

    def write(self, state: HostEndpointState) -> None:
        self.writes.append((state, set(self.net.datapath.policy.slots)))

    def read(self) -> HostEndpointState:
        return self.writes[-1][0] if self.writes else HostEndpointState()


def with_host(enabled: bool, labels: dict[str, str]) -> tuple[PolicySync, FakeMirror, HostEp]:
    sync, policies, net, _clock = policy_agent()
    target = HostEp(net)
    node: dict[str, Any] = {"metadata": {"name": "k8s-w1", "labels": labels}}
    sync.host_firewall = HostFirewall(enabled, lambda: node, lambda: target)  # type: ignore[arg-type, return-value]
    return sync, policies, target


def test_host_policy_rows_go_in_before_ingress_is_enforced_and_leave_after() -> None:
    sync, policies, target = with_host(True, {"kubernetes.io/hostname": "k8s-w1"})
    sync.sync()
    assert target.writes[-1][0] == HostEndpointState(HOST_ENDPOINT_ID, False, False)  # tracked, not filtered
    policies.put("/ccnp/w1", HOST_POLICY)
    sync.sync()
    state, slots_then = target.writes[-1]
    assert state == HostEndpointState(HOST_ENDPOINT_ID, True, False)
    assert WORLD_8080 in slots_then  # the allow was in the map when enforcement started
    policies.delete("/ccnp/w1")
    sync.sync()
    state, slots_then = target.writes[-1]
    assert state == HostEndpointState(HOST_ENDPOINT_ID, False, False)
    assert WORLD_8080 in slots_then  # enforcement went off before the rows left
    assert WORLD_8080 not in sync.net.datapath.policy.slots


def test_a_failed_host_row_keeps_enforcement_off() -> None:
    sync, policies, target = with_host(True, {"kubernetes.io/hostname": "k8s-w1"})
    sync.sync()
    sync.net.datapath.faults.fail("mb_policy", WORLD_8080)
    policies.put("/ccnp/w1", HOST_POLICY)
    with pytest.raises(NotApplied):
        sync.sync()
    assert target.writes[-1][0].ingress is False


def test_other_nodes_labels_and_a_disabled_firewall_leave_the_host_open() -> None:
    sync, policies, target = with_host(True, {"kubernetes.io/hostname": "k8s-w2"})
    policies.put("/ccnp/w1", HOST_POLICY)
    sync.sync()
    assert target.writes[-1][0] == HostEndpointState(HOST_ENDPOINT_ID, False, False)
    assert not any(s.ep_id == HOST_ENDPOINT_ID for s in sync.net.datapath.policy.slots)
    sync, policies, target = with_host(False, {"kubernetes.io/hostname": "k8s-w1"})
    policies.put("/ccnp/w1", HOST_POLICY)
    sync.sync()
    assert [w[0] for w in target.writes] == [HostEndpointState()]  # an old lab's entry is cleared
    assert not any(s.ep_id == HOST_ENDPOINT_ID for s in sync.net.datapath.policy.slots)


def test_nodes_mode_gives_covered_remote_node_ips_identities_the_policy_allows() -> None:
    sync, policies, _net, _clock = policy_agent()
    addrs = {"192.168.10.100": True, "192.168.10.101": False, "192.168.20.102": False}
    sync.node_addresses = lambda: addrs
    policies.put("/cnp/n", TO_NODES)
    sync.sync()
    assert sync.node_cidr_identities() == {}  # the default: CIDR rules select no node
    sync.cidr_match_nodes = lambda: True
    policies.put("/cnp/n", {**TO_NODES, "metadata": {**TO_NODES["metadata"], "resourceVersion": "2"}})
    sync.sync()
    ids = sync.node_cidr_identities()
    assert list(ids) == ["192.168.10.101"]
    assert "192.168.10.101/32" in sync.cidr_prefixes()
    egress = {s.identity for s in sync.net.datapath.policy.slots if s.ep_id == 7 and s.direction != DIR_INGRESS}
    assert ids["192.168.10.101"] in egress and 1 in egress  # the remote node and this node (host)
