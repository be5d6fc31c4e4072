"""Which Service an address belongs to, for a flow's ``source_service`` / ``destination_service``.

Hubble names the Service of a flow's end from the load-balancer state: a ClusterIP, NodePort,
ExternalIP or LoadBalancer frontend ``ip:port`` is that Service, and so is a backend ``ip:port`` it
translates to (the DNATed packet the destination pod receives, the reply it sends back). A backend
shared by several Services names the first one in frontend order, so the answer is stable.

Pure: the agent feeds it ``ServiceAddress`` entries built from its LB frontends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

_PROTOCOLS = {6: "TCP", 17: "UDP", 132: "SCTP"}


@dataclass(frozen=True)
class ServiceAddress:
    """One frontend of ``service`` (``namespace/name``) and the backends it translates to."""

    service: str
    ip: str
    port: int
    protocol: str  # TCP | UDP | SCTP
    backends: tuple[tuple[str, int], ...] = ()


class ServiceIndex:
    """``(ip, port, protocol)`` → ``(namespace, name)`` over frontends first, then backends."""

    def __init__(self, entries: Iterable[ServiceAddress] = ()) -> None:
        frontends: dict[tuple[str, int, str], tuple[str, str]] = {}
        backends: dict[tuple[str, int, str], tuple[str, str]] = {}
        for entry in entries:
            namespace, _, name = entry.service.partition("/")
            owner = (namespace, name) if name else ("", namespace)
            frontends.setdefault((entry.ip, entry.port, entry.protocol.upper()), owner)
            for ip, port in entry.backends:
                backends.setdefault((ip, port, entry.protocol.upper()), owner)
        self._frontends = len(frontends)
        self._owners = {**backends, **frontends}  # a frontend wins over a backend on the same ip:port
        self._ips = frozenset(ip for ip, _port, _proto in self._owners)  # most flow ends use none

    def __len__(self) -> int:
        return self._frontends

    def lookup(self, ip: str, port: int, protocol: int | str) -> tuple[str, str] | None:
        """The Service (namespace, name) whose frontend or backend is ``ip:port`` over ``protocol``
        (an IP protocol number or name); None for an address no Service uses or without a port."""
        if ip not in self._ips or not port:  # asked twice for every flow: the common answer first
            return None
        proto = _PROTOCOLS.get(protocol, "") if isinstance(protocol, int) else protocol.upper()
        return self._owners.get((ip, port, proto))
