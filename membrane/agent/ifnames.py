"""Interface names for the flows' ``interface`` field (``hubble observe --interface eth1`` matches the
name): the datapath records only the ifindex, this asks the kernel for its name in the agent's own
network namespace (the node's), once per index."""

from __future__ import annotations

import socket

_CACHE_MAX = 4096
_names: dict[int, str] = {}


def interface_name(ifindex: int) -> str:
    """The name of interface ``ifindex`` of this network namespace, "" when none has it (0 or gone)."""
    if not ifindex:
        return ""
    name = _names.get(ifindex)
    if name is None:
        try:
            name = socket.if_indextoname(ifindex)
        except OSError:
            return ""  # not cached: a device created later may take the index
        if len(_names) >= _CACHE_MAX:
            _names.clear()
        _names[ifindex] = name
    return name
