"""The proxy server: asyncio loops on threads (listeners on the first, connections spread over all; see
:func:`worker_count`), one transparent listener per redirect.

Listeners are IPv4 TCP sockets with IP_TRANSPARENT on 0.0.0.0:<proxy port> in the node's network
namespace; the datapath's redirect (bpf/lib/proxy.h + the TPROXY rule, datapath/linux/tproxy.py)
hands them connections whose local address is the original destination. For each accepted
connection the server asks ``describe(proxy_port, client, original_dst)`` for the
:class:`~membrane.proxy.registry.L7Context` (endpoint, identities from the ipcache, rules) and runs
the registered handler of the redirect's kind. Upstream connections are made from the client's own
address (IP_TRANSPARENT + bind) with SO_MARK = port << 16 | 0x0A00 (ingress proxy: the destination's
policy is not checked again) or 0x0B00 (egress proxy: the destination's ingress policy applies, and its
ingress proxy when it has L7 rules), so the datapath routes their replies back here (bpf/lib/proxy.h).

The loops are the stdlib's. ``MEMBRANE_PROXY_LOOP=uvloop`` (with uvloop installed by hand) runs them
on uvloop, ~10 % less CPU per request at one connection on loopback, but not the default: in the lab
the egress proxy's allowed requests then time out (tests/lab/test_l7_http.py
test_egress_l7_client_side; ingress and the loopback bench work), not understood yet (bench/README,
issue 12, l7uv).
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import logging
import os
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


def worker_count() -> int:
    """Event loops serving connections: one per CPU (at most 4). A proxied request's cost is mostly its
    two sends, and a send runs the receiving side's datapath (veth, BPF, TPROXY) in the sender's
    thread with the GIL released, so a second loop overlaps that kernel work instead of waiting for it."""
    return max(1, min(4, os.cpu_count() or 1))


def loop_kind() -> str:
    """``uvloop`` when ``MEMBRANE_PROXY_LOOP=uvloop`` and it is importable (see the module's doc); else
    the stdlib's loop."""
    if os.environ.get("MEMBRANE_PROXY_LOOP") == "uvloop" and importlib.util.find_spec("uvloop"):
        return "uvloop"
    return "asyncio"


def new_loop(kind: str | None = None) -> asyncio.AbstractEventLoop:
    if (kind or loop_kind()) == "uvloop":
        import uvloop  # noqa: PLC0415 — optional: the stdlib loop serves when it is missing

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class ProxyServer:
    """Listeners on one loop (its thread: ``l7-proxy``); each accepted connection is served to its end
    on one of ``workers`` loops (``l7-proxy``, ``l7-proxy-1`` …), round-robin."""

    def __init__(self, registry: Registry, describe: Describe, workers: int | None = None) -> None:
        self.registry = registry
        self.describe = describe
        self.loop_kind = loop_kind()
        self.loop = new_loop(self.loop_kind)
        self._loops = [self.loop] + [new_loop(self.loop_kind) for _ in range((workers or worker_count()) - 1)]
        self._next = itertools.cycle(self._loops)
        self._accepting: dict[int, tuple[socket.socket, asyncio.Task[None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # the connections being served, on any loop
        self._threads = [threading.Thread(target=self._run, args=(loop,), daemon=True,
                                          name="l7-proxy" if i == 0 else f"l7-proxy-{i}")
                         for i, loop in enumerate(self._loops)]
        self._counts = {"connections": 0, "errors": 0}
        self._counts_lock = threading.Lock()  # bumped from every loop's thread: `+=` alone can lose one

    def _bump(self, name: str) -> None:
        with self._counts_lock:
            self._counts[name] += 1

    @property
    def connections(self) -> int:
        """Connections accepted since start."""
        return self._counts["connections"]

    @property
    def errors(self) -> int:
        """Failed accepts and connections that ended in an unexpected exception."""
        return self._counts["errors"]

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    def start(self) -> None:
        log.debug("proxy: %d %s loop(s)", len(self._loops), self.loop_kind)
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        if not self._threads[0].is_alive():
            return
        for port in list(self._accepting):
            self.close(port)
        for loop, thread in zip(self._loops, self._threads, strict=True):
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)

    def _call(self, coro: Any) -> Any:
        fut: Future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(10)

    def ports(self) -> list[int]:
        return sorted(self._accepting)

    def listen(self, port: int) -> None:
        """Start the listener of proxy port ``port`` (idempotent)."""
        if port in self._accepting:
            return
        sock = transparent_listener(port)

        async def start() -> asyncio.Task[None]:
            return asyncio.get_running_loop().create_task(self._accept(port, sock))

        self._accepting[port] = (sock, self._call(start()))

    def close(self, port: int) -> None:
        """Stop accepting on ``port``; connections already accepted run to their end."""
        found = self._accepting.pop(port, None)
        if found is None:
            return
        sock, task = found

        async def stop() -> None:
            task.cancel()
            sock.close()

        self._call(stop())

    async def _accept(self, port: int, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except asyncio.CancelledError:
                raise
            except OSError as exc:  # e.g. EMFILE: the listener stays, the connection is lost
                self._bump("errors")
                log.warning("proxy port %d: accept failed: %s", port, exc)
                await asyncio.sleep(0.1)
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            target = next(self._next)
            if target is loop:
                self._spawn(port, conn)
            else:
                target.call_soon_threadsafe(self._spawn, port, conn)

    def _spawn(self, port: int, conn: socket.socket) -> None:
        """On the loop that serves ``conn``: its task, held until done (a loop keeps only weak ones)."""
        task = asyncio.get_running_loop().create_task(self._serve(port, conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, port: int, sock: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=sock)
        except OSError as exc:
            sock.close()
            log.debug("proxy port %d: accepted connection gone: %s", port, exc)
            return
        await self._accepted(port, reader, writer)

    async def _accepted(self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._bump("connections")
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
            self._bump("errors")
            log.warning("proxy port %d: connection failed: %s", port, exc)
        finally:
            writer.close()


def upstream_opener(client: tuple[str, int], original: tuple[str, int], port: int,
                    direction: str = "ingress") -> Callable[[], Any]:
    mark = (port << 16) | (MARK_MAGIC_FROM_PROXY if direction == "ingress" else MARK_MAGIC_FROM_PROXY_EGRESS)
    return lambda: open_transparent(client[0], original, mark)
