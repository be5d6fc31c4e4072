"""``policyCIDRMatchMode: [nodes]``: CIDR rules that also select node IPs, as in Cilium.

By default (``[]``) a CIDR selector never selects a cluster node: node IPs carry ``host`` (1) on their
own node and ``remote-node`` (6) elsewhere, identities without ``cidr:`` labels; nodes are reached
with ``toEntities: [host, remote-node]`` or ``toNodes``.

With ``nodes`` every remote node IP that some policy prefix (or except) covers gets a node-local
identity of its own labelled ``cidr:<ip>/32`` and ``reserved:remote-node`` — so CIDR selectors match
it by the address (excepts included) and ``remote-node``/``cluster`` entities still select it —
and this node's ipcache maps that IP to it (flagged as a node's address, so the datapath still treats
it as a node: no masquerade towards it). This node's own IP keeps ``host`` (1), which gets the label
``cidr:<internal IP>/32`` for selection (the router IP is not selectable by CIDR). The labels are built
by :mod:`membrane.identity.node_cidr`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
NODES = "nodes"


def host_prefix(ip: str) -> str:
    """``192.168.10.101`` -> ``192.168.10.101/32``."""
    return str(ipaddress.ip_network(ip))


def covered(ip: str, prefixes: Iterable[Network]) -> bool:
    """Does some prefix (a policy's CIDR or except) contain ``ip``?"""
    addr = ipaddress.ip_address(ip)
    return any(addr.version == p.version and addr in p for p in prefixes)


def covered_remote_nodes(node_ips: Mapping[str, bool], prefixes: Iterable[Network]) -> set[str]:
    """``node_ips``: address -> whether it is this node's; the remote ones some prefix covers."""
    nets = list(prefixes)
    return {ip for ip, own in node_ips.items() if not own and covered(ip, nets)}
