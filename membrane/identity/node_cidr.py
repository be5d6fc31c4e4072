"""Labels of node IPs in ``policyCIDRMatchMode: [nodes]`` (see membrane.policy.nodecidr): a remote node IP
some policy prefix covers is ``cidr:<ip>/32`` + ``reserved:remote-node``; the host identity also gets its
node IP's ``cidr:`` label."""

from __future__ import annotations

import ipaddress

from membrane.identity.labels import SOURCE_RESERVED, Label, LabelSet, cidr_label


def _host_prefix(ip: str) -> str:
    return str(ipaddress.ip_network(ip))


def remote_node_labels(ip: str) -> LabelSet:
    """A remote node IP's identity in ``nodes`` mode: its ``/32`` and ``reserved:remote-node``."""
    return LabelSet([cidr_label(_host_prefix(ip)), Label(SOURCE_RESERVED, "remote-node")])


def host_labels_with_cidr(base: LabelSet, own_ip: str | None) -> LabelSet:
    """The host identity's labels: ``base`` plus ``cidr:<own IP>/32`` when ``own_ip`` is covered."""
    if not own_ip:
        return base
    return LabelSet([*base, cidr_label(_host_prefix(own_ip))])
