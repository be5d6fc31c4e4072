"""The DNS proxy (cilium-semantics §4.2) on the L7 framework: UDP datagrams and TCP connections.

A query redirected from an endpoint is decided against the port's ``dns:`` rules
(membrane.fqdn.dnsproxy; ``ctx.rules`` None = every name): a denied one is answered by the proxy
(REFUSED, or NXDOMAIN), an allowed one is asked of the server the pod asked (``ctx.original_dst``)
and its answer goes through ``learn`` (the policy controller's ``learn_dns``: the FQDN identities'
policy-map entries, then their ipcache entries) *before* it is released, so the pod's first
connection to an address it just resolved is allowed. ``learn`` failing is logged and the answer
still released, as Cilium does once ``tofqdns-proxy-response-max-delay`` has passed.

The proxy asks upstream from the node's own address (Cilium's non-transparent DNS proxy mode): the
answer then comes back to the proxy by plain routing on any node. The pod gets its answer from the
address and port it asked (a transparent socket bound to the original destination), which its
conntrack entry expects. UDP has no listener in the TCP proxy server: :class:`UDPListener` is one per
UDP redirect (IP_TRANSPARENT + IP_RECVORIGDSTADDR). Every query and answer becomes an L7 record.
Malformed messages are dropped (UDP) or close the connection (TCP); nothing a client sends stops it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from membrane.fqdn.dnsmessage import REFUSED, frame, unframe
from membrane.fqdn.dnsproxy import DNSRecord, decide_answer, decide_query, rule_keys
from membrane.hubble.l7flow import L7Record
from membrane.proxy.registry import Conn, L7Context

log = logging.getLogger(__name__)

Addr = tuple[str, int]
Learn = Callable[[int, str, tuple[str, ...], int], None]
Describe = Callable[[int, Addr, Addr], L7Context | None]
IP_TRANSPARENT = 19
IP_RECVORIGDSTADDR = 20
UPSTREAM_TIMEOUT = 5.0
TCP_IDLE_TIMEOUT = 30.0
WILDCARD = "*"  # ctx.rules None: every name


def _keys(ctx: L7Context) -> frozenset[str]:
    return frozenset({WILDCARD}) if ctx.rules is None else rule_keys(ctx.rules)


class DNSAnswerer:
    """The decisions around one query, whatever carried it."""

    def __init__(self, learn: Learn, reject_code: int = REFUSED) -> None:
        self.learn = learn
        self.reject_code = reject_code
        self.malformed = 0

    def answer(self, data: bytes, ctx: L7Context, ask: Callable[[bytes], bytes | None], udp: bool) -> bytes | None:
        """The bytes to send back to the pod for one query (None: nothing)."""
        start = time.monotonic_ns()
        d = decide_query(data, _keys(ctx), self.reject_code)
        if d.query is None:
            self.malformed += 1
            log.info("dns proxy: malformed query from %s dropped: %s", ctx.client[0], d.error)
            return None
        assert d.record is not None
        self._emit(ctx, d.record, udp)
        if not d.forward:
            return d.reply
        raw = ask(data)
        if raw is None:
            return None
        a = decide_answer(raw, d.query)
        if a.answer is None:
            self.malformed += 1
            log.info("dns proxy: answer from %s not released: %s", ctx.original_dst, a.error)
            return None
        for name, ips, ttl in a.learned:
            try:
                self.learn(ctx.endpoint_id, name, ips, ttl)
            except Exception as exc:  # noqa: BLE001 - released anyway (Cilium's max-delay behaviour)
                log.warning("dns proxy: %s -> %s not in policy before the answer: %s", name, ips, exc)
        assert a.record is not None
        self._emit(ctx, a.record, udp, time.monotonic_ns() - start)
        return raw

    @staticmethod
    def _emit(ctx: L7Context, rec: DNSRecord, udp: bool, latency_ns: int = 0) -> None:
        try:
            ctx.emit(L7Record(kind="dns", type=rec.type, verdict=rec.verdict, src=ctx.client, dst=ctx.original_dst,
                              src_identity=ctx.src_identity, dst_identity=ctx.dst_identity,
                              ingress=ctx.redirect.direction == "ingress", latency_ns=latency_ns,
                              dns={**rec.to_dict(), "udp": udp}, summary=rec.summary()))
        except Exception as exc:  # noqa: BLE001 - observability never breaks resolution
            log.debug("dns proxy: record not emitted: %s", exc)


# ---- UDP ----------------------------------------------------------------------------------------------------------

def ask_udp(server: Addr, data: bytes) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(UPSTREAM_TIMEOUT)
        try:
            s.connect(server)
            s.send(data)
            return s.recv(65535)
        except OSError as exc:
            log.info("dns proxy: no answer from %s:%d: %s", *server, exc)
            return None


def _orig_dst(ancillary: list[tuple[int, int, bytes]]) -> Addr | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_IP and kind == IP_RECVORIGDSTADDR and len(data) >= 8:
            port = struct.unpack_from("!H", data, 2)[0]
            return socket.inet_ntoa(data[4:8]), port
    return None


class UDPListener:
    """One UDP redirect's socket on the proxy port; each datagram answered from a worker thread."""

    def __init__(self, port: int, describe: Describe, answerer: DNSAnswerer, *, transparent: bool = True,
                 host: str = "0.0.0.0", workers: int = 16) -> None:
        self.transparent = transparent
        self.describe = describe
        self.answerer = answerer
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if transparent:
            self.sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
            self.sock.setsockopt(socket.SOL_IP, IP_RECVORIGDSTADDR, 1)
        self.sock.bind((host, port))
        self.port = self.sock.getsockname()[1]
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"dns-udp-{self.port}")
        self._thread = threading.Thread(target=self._serve, name=f"dns-udp-{self.port}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _serve(self) -> None:
        local = self.sock.getsockname()[:2]
        while True:
            try:
                data, ancillary, _flags, client = self.sock.recvmsg(65535, socket.CMSG_SPACE(16))
            except OSError:
                return
            if client is None:  # shut down
                return
            self._pool.submit(self._one, data, client[:2], _orig_dst(ancillary) or local)

    def _one(self, data: bytes, client: Addr, orig: Addr) -> None:
        try:
            ctx = self.describe(self.port, client, orig)
            if ctx is None:
                log.debug("dns proxy: %s -> %s on port %d: no redirect", client, orig, self.port)
                return
            reply = self.answerer.answer(data, ctx, lambda q: ask_udp(ctx.original_dst, q), udp=True)
            if reply is not None:
                self._send(reply, client, ctx.original_dst)
        except Exception:  # noqa: BLE001 - one datagram's trouble must never stop the listener
            log.exception("dns proxy: datagram from %s failed", client)

    def _send(self, reply: bytes, client: Addr, orig: Addr) -> None:
        if not self.transparent:
            self.sock.sendto(reply, client)
            return
        # from the address and port the pod asked, which its conntrack entry expects
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
            s.bind(orig)
            s.sendto(reply, client)


# ---- TCP ----------------------------------------------------------------------------------------------------------

def tcp_handler(answerer: DNSAnswerer) -> Callable[[Conn, L7Context], object]:
    """The registry handler of ``dns`` for TCP redirects (two-byte length framing, RFC 1035 §4.2.2)."""

    async def handle(conn: Conn, ctx: L7Context) -> None:
        loop = asyncio.get_running_loop()
        upstream: list[socket.socket] = []

        def ask(data: bytes) -> bytes | None:
            try:
                if not upstream:
                    upstream.append(socket.create_connection(ctx.original_dst, timeout=UPSTREAM_TIMEOUT))
                upstream[0].sendall(frame(data))
                buffer = b""
                while True:
                    messages, buffer = unframe(buffer)
                    if messages:
                        return messages[0]
                    chunk = upstream[0].recv(65536)
                    if not chunk:
                        return None
                    buffer += chunk
            except OSError as exc:
                log.info("dns proxy: TCP upstream %s: %s", ctx.original_dst, exc)
                return None

        buffer = b""
        try:
            while True:
                chunk = await asyncio.wait_for(conn.reader.read(65536), TCP_IDLE_TIMEOUT)
                if not chunk:
                    return
                messages, buffer = unframe(buffer + chunk)
                for data in messages:
                    reply = await loop.run_in_executor(None, answerer.answer, data, ctx, ask, False)
                    if reply is None:
                        return  # garbage or no answer: close, the client retries or gives up
                    conn.writer.write(frame(reply))
                    await conn.writer.drain()
        except (TimeoutError, OSError):
            return
        finally:
            for s in upstream:
                s.close()

    return handle
