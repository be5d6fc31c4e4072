"""The TLS SNI proxy: ``serverNames`` on a port rule, enforced without decrypting anything.

A port rule with ``serverNames`` (and no ``rules:``) redirects its port here (kind ``tls``,
:mod:`membrane.policy.l7`). For each connection the proxy reads the client's ClientHello
(:mod:`membrane.proxy.tls_hello`), and if its SNI is selected by one of the names (exact, or a
pattern with ``*`` inside a label and a leading ``**.`` for several labels, as in Cilium 1.18+;
case-insensitive) it opens the upstream from the client's own address, replays the hello and then
splices bytes both ways untouched. Otherwise — no SNI, a name not listed, bytes that are not a
ClientHello, or no complete hello within :data:`HELLO_TIMEOUT` — the client's connection is reset
(RST, as Envoy's filter chain match failing does in Cilium; curl reports an SSL connect error) and
no upstream connection is made. Each decision is one L7 record (``TLS SNI one.one.one.one``) with
verdict FORWARDED or DROPPED.

``ctx.rules`` None means another rule allows the port without ``serverNames`` (allow-all, §3.4): the
hello is still read, for the record, and anything that parses is forwarded.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Sequence
from typing import Any

from membrane.hubble.l7flow import DROPPED, FORWARDED, REQUEST, L7Record
from membrane.model.fqdn import key_matches
from membrane.proxy.registry import Conn, L7Context
from membrane.proxy.tls_hello import ClientHelloError, parse_client_hello

log = logging.getLogger(__name__)

KIND = "tls"
READ_SIZE = 65536
HELLO_TIMEOUT = 10.0  # seconds a client has to send its whole ClientHello


def server_names(rules: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    """The lower-case server names of a redirect's rules (``[{"serverName": "x"}, …]``)."""
    return tuple(str(r.get("serverName", "")).strip().lower().rstrip(".") for r in rules if r.get("serverName"))


def sni_allowed(names: Sequence[str] | None, sni: str) -> bool:
    """Whether ``sni`` is selected by one of ``names`` (None = allow all; no SNI is never selected)."""
    if names is None:
        return True
    return bool(sni) and any(key_matches(n, sni) for n in names)


def sni_summary(sni: str) -> str:
    return f"TLS SNI {sni or '(none)'}"


def reset(writer: asyncio.StreamWriter) -> None:
    """Close the client connection with an RST (SO_LINGER 0) instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


def _record(ctx: L7Context, verdict: str, sni: str) -> None:
    try:
        ctx.emit(L7Record(kind=KIND, type=REQUEST, verdict=verdict, src=ctx.client, dst=ctx.original_dst,
                          src_identity=ctx.src_identity, dst_identity=ctx.dst_identity,
                          ingress=ctx.redirect.direction == "ingress", summary=sni_summary(sni)))
    except Exception as exc:  # noqa: BLE001 - observability never breaks the proxy
        log.debug("tls proxy: record not emitted: %s", exc)


async def read_hello(reader: asyncio.StreamReader, timeout: float = HELLO_TIMEOUT) -> tuple[str | None, bytes]:
    """(SNI, the bytes read); SNI None when the client closed early or sent something that is not a hello."""
    buf = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            hello = parse_client_hello(buf)
        except ClientHelloError as exc:
            log.info("tls proxy: not a ClientHello: %s", exc)
            return None, buf
        if hello is not None:
            return hello.server_name, buf
        left = deadline - loop.time()
        if left <= 0:
            return None, buf
        try:
            chunk = await asyncio.wait_for(reader.read(READ_SIZE), left)
        except TimeoutError:
            return None, buf
        if not chunk:
            return None, buf
        buf += chunk


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(READ_SIZE):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # half-close: the other direction may still be talking
    except OSError:
        writer.close()


async def handle_tls_sni(conn: Conn, ctx: L7Context) -> None:
    """The registry handler of ``tls``."""
    names = None if ctx.rules is None else server_names(ctx.rules)
    sni, hello = await read_hello(conn.reader)
    if sni is None or not sni_allowed(names, sni):
        _record(ctx, DROPPED, sni or "")
        reset(conn.writer)
        return
    _record(ctx, FORWARDED, sni)
    try:
        up_reader, up_writer = await ctx.open_upstream()
    except OSError as exc:
        log.info("tls proxy: upstream %s unreachable: %s", ctx.original_dst, exc)
        reset(conn.writer)
        return
    try:
        up_writer.write(hello)
        await asyncio.gather(_pump(conn.reader, up_writer), _pump(up_reader, conn.writer))
    finally:
        up_writer.close()
