"""The proxy server: one asyncio loop on a thread, one transparent listener per redirect.

Listeners are IPv4 TCP sockets with IP_TRANSPARENT on 0.0.0.0:<proxy port> in the node's network
namespace; the datapath's redirect (bpf/lib/proxy.h + the TPROXY rule, datapath/linux/tproxy.py)
hands them connections whose local address is the original destination. For each accepted
connection the server asks ``describe(proxy_port, client, original_dst)`` for the
:class:`~membrane.proxy.registry.L7Context` (endpoint, identities from the ipcache, rules) and runs
the registered handler of the redirect's kind. Upstream connections are made from the client's own
address (IP_TRANSPARENT + bind) with SO_MARK = port << 16 | 0x0A00 (ingress proxy: the destination's
policy is not checked again) or 0x0B00 (egress proxy: the destination's ingress policy applies, and its
ingress proxy when it has L7 rules), so the datapath routes their replies back here (bpf/lib/proxy.h).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from membrane.proxy.registry import Conn, L7Context, Registry

log = logging.getLogger(__name__)

IP_TRANSPARENT = 19
SO_MARK = 36
MARK_MAGIC_FROM_PROXY = 0x0A00  # the ingress proxy's upstream connections
MARK_MAGIC_FROM_PROXY_EGRESS = 0x0B00  # the egress proxy's: the destination's ingress policy still applies
PORT_RANGE = (10000, 20000)

Describe = Callable[[int, tuple[str, int], tuple[str, int]], L7Context | None]


def _tcp_socket() -> socket.socket:
    # proto IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on sockets that say so, and without it a
    # response written as headers + body waits out the client's delayed ACK (40 ms per request).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def transparent_listener(port: int, host: str = "0.0.0.0") -> socket.socket:
    sock = _tcp_socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


async def open_transparent(src_ip: str, dst: tuple[str, int], mark: int,
                           timeout: float = 5.0) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to ``dst`` from ``src_ip`` (any address: IP_TRANSPARENT) with SO_MARK ``mark``."""
    sock = _tcp_socket()
    try:
        sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
        sock.bind((src_ip, 0))
        sock.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, dst), timeout)
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


class ProxyServer:
    def __init__(self, registry: Registry, describe: Describe) -> None:
        self.registry = registry
        self.describe = describe
        self.loop = asyncio.new_event_loop()
        self._servers: dict[int, asyncio.base_events.Server] = {}
        self._thread = threading.Thread(target=self._run, name="l7-proxy", daemon=True)
        self.connections = 0
        self.errors = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        for port in list(self._servers):
            self.close(port)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def _call(self, coro: Any) -> Any:
        fut: Future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(10)

    def ports(self) -> list[int]:
        return sorted(self._servers)

    def listen(self, port: int) -> None:
        """Start the listener of proxy port ``port`` (idempotent)."""
        if port in self._servers:
            return
        sock = transparent_listener(port)

        async def start() -> asyncio.base_events.Server:
            return await asyncio.start_server(lambda r, w: self._accepted(port, r, w), sock=sock)

        self._servers[port] = self._call(start())

    def close(self, port: int) -> None:
        server = self._servers.pop(port, None)
        if server is None:
            return

        async def stop() -> None:
            server.close()

        self._call(stop())

    async def _accepted(self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            client = writer.get_extra_info("peername")[:2]
            original = writer.get_extra_info("sockname")[:2]
            ctx = self.describe(port, client, original)
            handler = self.registry.get(ctx.redirect.kind) if ctx is not None else None
            if ctx is None or handler is None:
                log.warning("proxy port %d: no redirect or handler for %s -> %s", port, client, original)
                return
            await handler(Conn(reader, writer), ctx)
        except Exception as exc:  # one connection must never take the proxy down
            self.errors += 1
            log.warning("proxy port %d: connection failed: %s", port, exc)
        finally:
            writer.close()


def upstream_opener(client: tuple[str, int], original: tuple[str, int], port: int,
                    direction: str = "ingress") -> Callable[[], Any]:
    mark = (port << 16) | (MARK_MAGIC_FROM_PROXY if direction == "ingress" else MARK_MAGIC_FROM_PROXY_EGRESS)
    return lambda: open_transparent(client[0], original, mark)
