"""Errors of IP address management that are not bad input (bad input raises ValidationError).

Each carries the full user-facing message in ``str(err)``; the allocators change nothing before raising.
"""

from __future__ import annotations


class IPAMError(Exception):
    """Base of allocation failures: the request was well formed but cannot be satisfied."""


class PoolExhausted(IPAMError):
    """The cluster pool has no free node CIDR left.

    ``node`` is the first node that got none; ``allocated`` is what the call could still hand out (existing
    allocations plus the nodes served before the pool ran out), ``unallocated`` every node left without a CIDR,
    so an operator can publish the partial result and report an error per node.
    """

    def __init__(self, message: str, node: str, allocated: dict[str, str], unallocated: list[str]) -> None:
        super().__init__(message)
        self.node = node
        self.allocated = allocated
        self.unallocated = unallocated


class RangeFull(IPAMError):
    """A node's pod CIDR has no free address; the message is the text host-local gives the CNI caller."""

    def __init__(self, first: str, last: str) -> None:
        super().__init__(f"no IP addresses available in range set: {first}-{last}")
        self.first = first
        self.last = last


class AddressUnavailable(IPAMError):
    """A specific address was requested that is outside the usable range or held by another owner."""
