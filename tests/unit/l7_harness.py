"""Run an L7 framework handler on loopback without root: an asyncio server on a thread, each accepted
connection handed to the handler with an L7Context that a test builds (no TPROXY, no ipcache)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from membrane.hubble.l7flow import L7Record
from membrane.policy.l7 import Redirect
from membrane.proxy.registry import Conn, L7Context
from membrane.proxy.server import new_loop


def context(kind: str, port: int, upstream: tuple[str, int], rules: list[dict[str, Any]] | None,
            records: list[L7Record], client: tuple[str, int] = ("127.0.0.1", 0), *, direction: str = "egress",
            protocol: int = 6, endpoint: int = 7) -> L7Context:
    return L7Context(redirect=Redirect(direction, protocol, port, kind), endpoint_id=endpoint, client=client,
                     original_dst=upstream, src_identity=300, dst_identity=400, rules=rules,
                     open_upstream=lambda: asyncio.open_connection(*upstream), emit=records.append)


class LoopServer:
    """``handler`` on 127.0.0.1:<port>; ``make_ctx(client)`` describes each connection."""

    def __init__(self, handler: Callable[[Conn, L7Context], Any], make_ctx: Callable[[tuple[str, int]], L7Context]):
        self.loop = new_loop()  # the proxy's loop kind (stdlib; MEMBRANE_PROXY_LOOP=uvloop: uvloop)
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await handler(Conn(reader, writer), make_ctx(writer.get_extra_info("peername")[:2]))
            finally:
                writer.close()

        async def start() -> asyncio.base_events.Server:
            return await asyncio.start_server(accepted, "127.0.0.1", 0)

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(5)
        self.port = self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
