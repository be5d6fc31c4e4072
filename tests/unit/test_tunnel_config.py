"""Tunnel routing's pure parts: the Helm keys, what a running lab cannot switch, the tunnel map's
contents from the nodes, and the bpf tunnel list rendering."""

from __future__ import annotations

import pytest

from membrane.agent.tunnel_sync import tunnel_endpoints
from membrane.cli.bpf_cmds import render_tunnel
from membrane.endpoint.routing import NodeInfo
from membrane.model.config import ClusterConfig
from membrane.model.errors import ValidationError
from membrane.model.helm_release import effective_options, resolve, upgrade_blockers


def test_tunnel_mode_with_ciliums_defaults() -> None:
    cfg = resolve({"routingMode": "tunnel"}).config
    assert (cfg.routing_mode, cfg.tunnel_protocol, cfg.tunnel_port) == ("tunnel", "vxlan", 8472)
    options = dict(effective_options(cfg.to_dict()))
    assert (options["RoutingMode"], options["TunnelProtocol"], options["TunnelPort"]) == ("tunnel", "vxlan", "8472")
    assert resolve({"routingMode": "tunnel", "tunnelPort": 4789}).config.tunnel_port == 4789


@pytest.mark.parametrize("values,message", [
    ({"routingMode": "tunnel", "tunnelProtocol": "gre"}, "tunnelProtocol 'gre' is not one of vxlan, geneve"),
    ({"routingMode": "tunnel", "tunnelProtocol": "geneve"}, "tunnelProtocol geneve is not implemented yet"),
    ({"routingMode": "tunnel", "tunnelPort": 70000}, "tunnelPort must be between 1 and 65535"),
    ({"routingMode": "overlay"}, "routingMode 'overlay' not one of native, tunnel"),
])
def test_bad_tunnel_values_are_refused(values: dict, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        resolve(values)
    assert message in str(err.value), str(err.value)


def test_a_running_lab_cannot_switch_routing_mode() -> None:
    running = ClusterConfig()
    blockers = upgrade_blockers(running, ClusterConfig(routing_mode="tunnel"))
    assert blockers == ["routingMode: native -> tunnel needs a new lab (pods were created with the MTU and routes "
                        "of the routing mode the lab was created with)"]
    assert upgrade_blockers(ClusterConfig(routing_mode="tunnel"), ClusterConfig(routing_mode="tunnel")) == []


def test_the_tunnel_map_holds_the_other_nodes_pod_cidrs() -> None:
    nodes = [NodeInfo("k8s-ctr", "192.168.10.100", ("10.0.0.0/24",)),
             NodeInfo("k8s-w1", "192.168.10.101", ("10.0.1.0/24",)),
             NodeInfo("k8s-w2", "192.168.20.100", ("10.0.2.0/24", "10.0.3.0/24")),
             NodeInfo("new", "", ("10.0.4.0/24",)),  # no InternalIP yet
             NodeInfo("k8s-w3", "192.168.10.103", ())]  # no pod CIDR yet
    assert tunnel_endpoints("k8s-ctr", nodes) == {"10.0.1.0/24": "192.168.10.101", "10.0.2.0/24": "192.168.20.100",
                                                  "10.0.3.0/24": "192.168.20.100"}


def test_bpf_tunnel_list_prints_ciliums_columns() -> None:
    assert render_tunnel([("10.0.1.0:0", "192.168.10.101:0")]).splitlines() == [
        "TUNNEL       VALUE", "10.0.1.0:0   192.168.10.101:0"]
