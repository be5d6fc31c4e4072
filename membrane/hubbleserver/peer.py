"""Hubble's peer service (``peer.Peer/Notify``): how a relay learns every node's Hubble server.

Each agent serves it next to the Observer API. ``Notify`` first sends every known peer as PEER_ADDED,
then each change as it happens (PEER_ADDED, PEER_UPDATED for a new address or TLS name, PEER_DELETED),
until the call ends. The table of peers is fed by the agent from its view of the nodes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import grpc

from membrane.hubble.proto.peer import peer_pb2, peer_pb2_grpc


@dataclass(frozen=True)
class PeerInfo:
    """A node's Hubble server: ``address`` is ``host:port``; ``server_name`` the TLS name to verify it
    by (empty: plaintext)."""

    address: str
    server_name: str = ""


class PeerSource:
    """The current peers by name, thread-safe; readers wait for changes with a bounded wait."""

    def __init__(self, peers: Mapping[str, PeerInfo] | None = None) -> None:
        self._peers: dict[str, PeerInfo] = dict(peers or {})
        self._version = 0
        self._cond = threading.Condition()

    def set(self, peers: Mapping[str, PeerInfo]) -> None:
        with self._cond:
            if dict(peers) != self._peers:
                self._peers = dict(peers)
                self._version += 1
                self._cond.notify_all()

    def snapshot(self) -> tuple[dict[str, PeerInfo], int]:
        with self._cond:
            return dict(self._peers), self._version

    def wait(self, version: int, timeout: float) -> bool:
        """True once the table changed after ``version`` (False after ``timeout`` seconds)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._version != version, timeout=timeout)


def notification(name: str, info: PeerInfo, kind: int) -> peer_pb2.ChangeNotification:
    note = peer_pb2.ChangeNotification(name=name, address=info.address, type=kind)  # type: ignore[arg-type]
    if info.server_name:
        note.tls.server_name = info.server_name
    return note


def changes(old: Mapping[str, PeerInfo], new: Mapping[str, PeerInfo]) -> list[peer_pb2.ChangeNotification]:
    """The notifications that take a client from ``old`` to ``new``, by name."""
    out = [notification(n, old[n], peer_pb2.PEER_DELETED) for n in sorted(old) if n not in new]
    for name in sorted(new):
        if name not in old:
            out.append(notification(name, new[name], peer_pb2.PEER_ADDED))
        elif old[name] != new[name]:
            out.append(notification(name, new[name], peer_pb2.PEER_UPDATED))
    return out


class PeerServicer(peer_pb2_grpc.PeerServicer):
    def __init__(self, source: PeerSource, *, follow_wait: float = 0.2) -> None:
        self.source = source
        self._wait = follow_wait
        self.stopping = threading.Event()

    def Notify(self, request: peer_pb2.NotifyRequest, context: grpc.ServicerContext) -> Iterator:
        known, version = self.source.snapshot()
        yield from changes({}, known)
        while context.is_active() and not self.stopping.is_set():
            if not self.source.wait(version, self._wait):
                continue
            current, version = self.source.snapshot()
            yield from changes(known, current)
            known = current
