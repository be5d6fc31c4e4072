"""The socket LB's view of this node's endpoints (bpf/sock.c, membrane.datapath.sock_lb): the
programs attached or detached at agent start as ``socketLB.enabled`` says, and each endpoint's network
namespace cookie in mb_sock_netns from its ADD to its DEL, so that only the node's pods are translated."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from membrane.datapath.sock_lb import SocketLB
from membrane.endpoint.model import Endpoint

log = logging.getLogger(__name__)


class SocketLBSync:
    def __init__(self, pin_dir: str) -> None:
        self.pin_dir = pin_dir
        self.enabled = False  # socketLB.enabled: set before start()
        self._slb: SocketLB | None = None

    @property
    def active(self) -> bool:
        """Attached (what status reports as "Socket LB: Enabled")."""
        return self._slb is not None

    def start(self, endpoints: Iterable[Endpoint]) -> None:
        """Attach (or, when off, detach) the programs; the namespace map then holds exactly the
        endpoints given (a restart drops the namespaces of endpoints that went while it was down)."""
        slb = SocketLB(self.pin_dir)
        if not self.enabled:
            slb.detach()
            return
        slb.attach()
        self._slb = slb
        endpoints = list(endpoints)
        for ip in set(slb.netns.items().values()) - {ep.ipv4 for ep in endpoints}:
            slb.remove_endpoint(ip)
        for ep in endpoints:
            self.add(ep.netns, ep.ipv4)

    def add(self, netns: str, ip: str) -> None:
        if self._slb is None:
            return
        try:
            self._slb.add_endpoint(netns, ip)
        except OSError as exc:  # its namespace is gone: the per-packet path still serves it
            log.warning("socket LB: namespace %s of %s: %s", netns, ip, exc)

    def remove(self, ip: str) -> None:
        if self._slb is not None:
            self._slb.remove_endpoint(ip)
