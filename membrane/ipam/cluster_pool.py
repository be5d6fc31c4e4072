"""Cluster-pool IPAM: the operator hands each node a pod CIDR carved out of clusterPoolIPv4PodCIDRList.

Rules (Cilium's ``cluster-pool`` mode):
- every node without a CIDR gets the lowest free ``/clusterPoolIPv4MaskSize`` subnet, taking the pool's CIDRs
  in list order;
- an existing allocation never changes, even if the pool no longer contains it (it still occupies its
  addresses, so no other node is given an overlapping subnet);
- appending a CIDR to the list extends the pool.
The result depends only on the arguments, so replaying the same inputs gives the same allocation.
"""

from __future__ import annotations

import bisect
import ipaddress

from membrane.ipam.cidr import parse_network
from membrane.ipam.errors import PoolExhausted
from membrane.model.errors import ValidationError

POOL_KEY = "clusterPoolIPv4PodCIDRList"
MASK_KEY = "clusterPoolIPv4MaskSize"
MAX_MASK_SIZE = 30  # a node CIDR must leave at least two usable pod addresses


def allocate_node_cidrs(
    pool: list[str], mask_size: int, existing: dict[str, str], nodes: list[str]
) -> dict[str, str]:
    """Node name -> pod CIDR for every node in ``existing`` or ``nodes``.

    ``existing`` entries are returned unchanged; nodes of ``nodes`` that have none get a new CIDR, in the
    order given (duplicates are served once). Raises ValidationError for malformed input and PoolExhausted
    (carrying the partial result) when the pool runs out.
    """
    networks = _parse_pool(pool, mask_size)
    if not isinstance(existing, dict):
        raise ValidationError(f"expected a mapping of node name to CIDR, got {type(existing).__name__}", "existing")
    used = _Occupied()
    for node, cidr in existing.items():
        _check_node_name(node, "existing")
        used.add(parse_network(cidr, f"existing[{node!r}]"))
    for index, node in enumerate(nodes):
        _check_node_name(node, f"nodes[{index}]")

    result = dict(existing)
    pending = [node for node in dict.fromkeys(nodes) if node not in result]
    for position, node in enumerate(pending):
        subnet = _lowest_free(networks, mask_size, used)
        if subnet is None:
            raise PoolExhausted(
                f"cluster-pool exhausted: no free /{mask_size} left in {POOL_KEY} [{', '.join(pool)}] "
                f"for node {node!r} ({len(result)} nodes hold a CIDR); "
                f"append a CIDR to {POOL_KEY} to extend the pool",
                node=node,
                allocated=dict(result),
                unallocated=pending[position:],
            )
        used.add(subnet)
        result[node] = str(subnet)
    return result


def _parse_pool(pool: list[str], mask_size: int) -> list[ipaddress.IPv4Network]:
    if isinstance(mask_size, bool) or not isinstance(mask_size, int):
        raise ValidationError(f"expected an integer, got {mask_size!r}", MASK_KEY)
    if not isinstance(pool, list | tuple) or not pool:
        raise ValidationError("must be a non-empty list of CIDRs", POOL_KEY)
    networks = [parse_network(cidr, f"{POOL_KEY}[{i}]") for i, cidr in enumerate(pool)]
    narrowest = max(net.prefixlen for net in networks)
    if not narrowest <= mask_size <= MAX_MASK_SIZE:
        raise ValidationError(
            f"/{mask_size} must be between /{narrowest} (the narrowest pool CIDR) and /{MAX_MASK_SIZE}", MASK_KEY
        )
    return networks


def _check_node_name(node: object, where: str) -> None:
    if not isinstance(node, str) or not node:
        raise ValidationError(f"node name must be a non-empty string, got {node!r}", where)


class _Occupied:
    """Disjoint, sorted address intervals already taken by node CIDRs."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def add(self, net: ipaddress.IPv4Network) -> None:
        start, end = int(net.network_address), int(net.broadcast_address)
        intervals = sorted([*zip(self.starts, self.ends, strict=True), (start, end)])
        merged: list[list[int]] = []
        for s, e in intervals:
            if merged and s <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        self.starts = [s for s, _ in merged]
        self.ends = [e for _, e in merged]

    def overlapping_end(self, start: int, end: int) -> int | None:
        """End of the taken interval overlapping [start, end], if any."""
        index = bisect.bisect_right(self.starts, end) - 1
        if index >= 0 and self.ends[index] >= start:
            return self.ends[index]
        return None


def _lowest_free(
    networks: list[ipaddress.IPv4Network], mask_size: int, used: _Occupied
) -> ipaddress.IPv4Network | None:
    step = 1 << (32 - mask_size)
    for net in networks:
        candidate, last = int(net.network_address), int(net.broadcast_address)
        while candidate + step - 1 <= last:
            taken_until = used.overlapping_end(candidate, candidate + step - 1)
            if taken_until is None:
                return ipaddress.IPv4Network((candidate, mask_size))
            candidate = (taken_until // step + 1) * step
    return None
