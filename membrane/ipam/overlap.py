"""Pod CIDRs must not overlap the networks the nodes themselves live on (or routing breaks in odd ways)."""

from __future__ import annotations

from membrane.ipam.cidr import parse_network
from membrane.model.errors import ValidationError

POOL_SOURCE = "clusterPoolIPv4PodCIDRList"


def check_no_overlap(pod_cidrs: dict[str, str] | list[str], node_networks: list[str]) -> None:
    """Raise ValidationError naming both networks if any pod CIDR overlaps a node network.

    ``pod_cidrs`` is either the cluster-pool list (reported as ``clusterPoolIPv4PodCIDRList``) or node name ->
    podCIDR (kubernetes mode, reported as ``podCIDR of node <name>``). ``node_networks`` are the node
    (underlay) networks; an interface address such as ``192.168.10.2/24`` stands for its network.
    """
    if isinstance(pod_cidrs, dict):
        labelled = [(cidr, f"podCIDR of node {node}") for node, cidr in pod_cidrs.items()]
    elif isinstance(pod_cidrs, list | tuple):
        labelled = [(cidr, POOL_SOURCE) for cidr in pod_cidrs]
    else:
        raise ValidationError(f"expected a list of CIDRs or a mapping of node to CIDR, got {type(pod_cidrs).__name__}")
    nodes = [parse_network(net, f"node network {net!r}", strict=False) for net in node_networks]
    for cidr, source in labelled:
        pod = parse_network(cidr, source)
        for node_net in nodes:
            if pod.overlaps(node_net):
                raise ValidationError(f"pod CIDR {pod} ({source}) overlaps node network {node_net}")
