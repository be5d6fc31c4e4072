"""The node's DNS proxy: UDP and TCP listeners that apply ``dns:`` rules (membrane.fqdn.dnsproxy).

For each query: who sent it (``endpoint_of(source IP)`` -> endpoint id and the selector keys of its
``dns:`` rules; None: not an endpoint the proxy serves, dropped), where the pod sent it
(``upstream_of(client, local)``: the original destination the redirect kept), then the decision. An
allowed query goes to that server from a socket of the proxy's own; its answer goes through ``learn``
(the policy controller's ``learn_dns``: ipcache and policy map entries in place) *before* it is sent
to the pod, so the pod's first connection to an address it just resolved is allowed. ``learn``
failing is logged and the answer is still released, as Cilium does once
``tofqdns-proxy-response-max-delay`` has passed. Every step calls ``emit`` with its L7 record.

Malformed messages are dropped with a log line; a TCP stream that sends garbage or a frame it cannot
parse is closed. Nothing a client sends can stop the listeners.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from membrane.fqdn.dnsmessage import REFUSED, frame, unframe
from membrane.fqdn.dnsproxy import DNSRecord, decide_answer, decide_query

log = logging.getLogger(__name__)

Addr = tuple[str, int]
UPSTREAM_TIMEOUT = 5.0
TCP_IDLE_TIMEOUT = 30.0
MAX_TCP_BUFFER = 2 + 65535


@dataclass(frozen=True)
class Client:
    endpoint: int
    keys: frozenset[str]


@dataclass(frozen=True)
class Observation:
    """One L7 record with the connection it belongs to (for the Hubble flow)."""

    endpoint: int
    client: Addr
    server: Addr
    protocol: str  # UDP | TCP
    record: DNSRecord


class DNSProxy:
    def __init__(self, endpoint_of: Callable[[str], Client | None], upstream_of: Callable[[Addr, Addr], Addr],
                 learn: Callable[[int, str, tuple[str, ...], int], None],
                 emit: Callable[[Observation], None] = lambda _o: None, *, reject_code: int = REFUSED,
                 workers: int = 32) -> None:
        self.endpoint_of = endpoint_of
        self.upstream_of = upstream_of
        self.learn = learn
        self.emit = emit
        self.reject_code = reject_code
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="dns-proxy")
        self._socks: list[socket.socket] = []
        self._stop = threading.Event()
        self.dropped_malformed = 0

    # ---- listeners ---------------------------------------------------------------------------------------------
    def start(self, udp: socket.socket, tcp: socket.socket | None = None) -> None:
        """Serve on bound sockets (``tcp`` listening); each gets a thread of its own."""
        self._socks = [s for s in (udp, tcp) if s is not None]
        threading.Thread(target=self._serve_udp, args=(udp,), name="dns-proxy-udp", daemon=True).start()
        if tcp is not None:
            threading.Thread(target=self._serve_tcp, args=(tcp,), name="dns-proxy-tcp", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _serve_udp(self, sock: socket.socket) -> None:
        local = sock.getsockname()
        while not self._stop.is_set():
            try:
                data, client = sock.recvfrom(65535)
            except OSError:
                return
            self._pool.submit(self._guard, self._udp_query, sock, data, client, local)

    def _serve_tcp(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, client = sock.accept()
            except OSError:
                return
            threading.Thread(target=self._guard, args=(self._tcp_conn, conn, client), daemon=True).start()

    def _guard(self, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - one client's trouble must never stop the proxy
            log.exception("dns proxy: request failed")

    # ---- one query ---------------------------------------------------------------------------------------------
    def _answer(self, data: bytes, client: Addr, local: Addr, protocol: str,
                ask: Callable[[Addr, bytes], bytes | None]) -> bytes | None:
        """The bytes to send back to the pod for one query (None: nothing)."""
        who = self.endpoint_of(client[0])
        if who is None:
            log.debug("dns proxy: query from %s, not a proxied endpoint: dropped", client[0])
            return None
        server = self.upstream_of(client, local)
        d = decide_query(data, who.keys, self.reject_code)
        if d.query is None:
            self.dropped_malformed += 1
            log.info("dns proxy: malformed query from %s dropped: %s", client[0], d.error)
            return None
        assert d.record is not None
        self.emit(Observation(who.endpoint, client, server, protocol, d.record))
        if not d.forward:
            return d.reply
        raw = ask(server, data)
        if raw is None:
            return None
        a = decide_answer(raw, d.query)
        if a.answer is None:
            self.dropped_malformed += 1
            log.info("dns proxy: answer from %s:%d not released: %s", *server, a.error)
            return None
        for name, ips, ttl in a.learned:
            try:
                self.learn(who.endpoint, name, ips, ttl)
            except Exception as exc:  # noqa: BLE001 - released anyway (Cilium's max-delay behaviour)
                log.warning("dns proxy: %s -> %s not in policy before the answer: %s", name, ips, exc)
        assert a.record is not None
        self.emit(Observation(who.endpoint, client, server, protocol, a.record))
        return raw

    def _udp_query(self, sock: socket.socket, data: bytes, client: Addr, local: Addr) -> None:
        reply = self._answer(data, client, local, "UDP", _ask_udp)
        if reply is not None:
            sock.sendto(reply, client)

    def _tcp_conn(self, conn: socket.socket, client: Addr) -> None:
        local = conn.getsockname()
        upstream: dict[Addr, socket.socket] = {}

        def ask(server: Addr, data: bytes) -> bytes | None:
            s = upstream.get(server)
            if s is None:
                s = upstream[server] = socket.create_connection(server, timeout=UPSTREAM_TIMEOUT)
            s.sendall(frame(data))
            return _read_frame(s)

        buffer = b""
        with conn:
            conn.settimeout(TCP_IDLE_TIMEOUT)
            try:
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    messages, buffer = unframe(buffer + chunk)
                    for data in messages:
                        reply = self._answer(data, client, local, "TCP", ask)
                        if reply is None:
                            return  # garbage or no answer: close, the client retries or gives up
                        conn.sendall(frame(reply))
            except OSError:
                return
            finally:
                for s in upstream.values():
                    s.close()


def _ask_udp(server: Addr, data: bytes) -> bytes | None:
    with socket.socket(socket.AF_INET6 if ":" in server[0] else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(UPSTREAM_TIMEOUT)
        try:
            s.sendto(data, server)
            raw, _ = s.recvfrom(65535)
            return raw
        except OSError as exc:
            log.info("dns proxy: no answer from %s:%d: %s", *server, exc)
            return None


def _read_frame(s: socket.socket) -> bytes | None:
    buffer = b""
    while True:
        messages, buffer = unframe(buffer)
        if messages:
            return messages[0]
        chunk = s.recv(65536)
        if not chunk or len(buffer) + len(chunk) > MAX_TCP_BUFFER:
            return None
        buffer += chunk
