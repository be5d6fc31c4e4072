"""The L7 handler registry: one handler per L7 kind ("http", "dns", "kafka").

A handler is an async function ``handler(conn, ctx)`` called once per connection (TCP: the accepted
client connection; UDP kinds get one call per datagram through ``ctx.datagram``). It reads requests
from ``conn.reader`` and answers on ``conn.writer``, decides each one against ``ctx.rules`` (None =
allow everything, [] = nothing; otherwise a request is allowed if any rule matches), opens the
upstream with ``await ctx.open_upstream()`` (a connection to ``ctx.original_dst`` from the client's
own address, as Cilium's proxies keep the source identity) and reports every request and response
through ``ctx.emit(L7Record(...))`` — the one way L7 flows reach Hubble.

Identities come from the agent's ipcache (``ctx.src_identity``/``ctx.dst_identity``), never from
guesses on the addresses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from membrane.hubble.l7flow import L7Record
from membrane.policy.l7 import Redirect

__all__ = ["Conn", "Handler", "L7Context", "L7Record", "Registry"]


@dataclass
class Conn:
    """The accepted client connection (the socket's local address is the original destination)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


@dataclass
class L7Context:
    redirect: Redirect
    endpoint_id: int  # the local endpoint whose policy redirected the connection
    client: tuple[str, int]  # the connection's source (the pod, or its peer for ingress)
    original_dst: tuple[str, int]
    src_identity: int
    dst_identity: int
    rules: list[dict[str, Any]] | None
    open_upstream: Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
    emit: Callable[[L7Record], None]
    extra: dict[str, Any] = field(default_factory=dict)  # kind-specific services (e.g. the DNS proxy's hooks)


Handler = Callable[[Conn, L7Context], Awaitable[None]]


class Registry:
    """kind -> handler; the proxy server looks a redirect's kind up here for every connection."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    def get(self, kind: str) -> Handler | None:
        return self._handlers.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._handlers)
