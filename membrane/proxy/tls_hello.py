"""The TLS ClientHello, read far enough to learn the server name the client asks for (SNI, RFC 6066).

:func:`parse_client_hello` takes the bytes a client sent so far and returns ``None`` while the
ClientHello is incomplete, a :class:`ClientHello` once it is whole, or raises
:class:`ClientHelloError` when the bytes cannot be the start of a TLS connection (not a handshake
record, not a ClientHello, a length that points past its container, a hello over
:data:`MAX_HELLO`). The hello may be split over several handshake records (RFC 8446 §5.1 allows
fragmenting handshake messages); their fragments are joined. Every length is checked against the
bytes that hold it before it is used, so no input makes the parser read out of bounds or loop: the
only outcomes are ``None``, a result, or ClientHelloError.

Nothing is decrypted: the ClientHello is sent in the clear (ECH is not handled; with ECH the outer
SNI is the one a policy sees, as for Envoy's tls_inspector).
"""

from __future__ import annotations

from dataclasses import dataclass

CONTENT_HANDSHAKE = 22
HANDSHAKE_CLIENT_HELLO = 1
EXT_SERVER_NAME = 0
NAME_TYPE_HOST = 0
RECORD_HEADER = 5
MAX_RECORD = 16384 + 2048  # TLSCiphertext may carry up to 2^14 + 2048 bytes
MAX_HELLO = 65536  # a ClientHello larger than this is refused (real ones are < 2 KiB, ~8 KiB with PQ shares)


class ClientHelloError(ValueError):
    """The bytes are not (the start of) a TLS ClientHello."""


@dataclass(frozen=True)
class ClientHello:
    server_name: str  # the host_name of the server_name extension, lower case; "" when the client sent none
    legacy_version: int  # e.g. 0x0303
    consumed: int  # bytes of the input the hello's records took


class _Reader:
    """Bounds-checked big-endian reads over one byte string."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int, field: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ClientHelloError(f"{self.what}: {field} needs {n} bytes, {len(self.data) - self.pos} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint(self, size: int, field: str) -> int:
        return int.from_bytes(self.take(size, field), "big")

    def vector(self, size: int, field: str) -> bytes:
        """A <size>-byte length followed by that many bytes."""
        return self.take(self.uint(size, f"{field} length"), field)

    def left(self) -> int:
        return len(self.data) - self.pos


def _handshake_bytes(buf: bytes) -> tuple[bytes, int] | None:
    """The handshake message bytes of the leading records and the input they took; None = more needed."""
    out = bytearray()
    pos = 0
    wanted = -1  # length of the whole handshake message once its 4-byte header is in
    while True:
        if wanted >= 0 and len(out) >= wanted:
            return bytes(out[:wanted]), pos
        if len(buf) - pos < RECORD_HEADER:
            return None
        ctype, major, length = buf[pos], buf[pos + 1], int.from_bytes(buf[pos + 3:pos + 5], "big")
        if ctype != CONTENT_HANDSHAKE:
            raise ClientHelloError(f"record type {ctype} is not a TLS handshake (22)")
        if major != 3:
            raise ClientHelloError(f"record version {major}.{buf[pos + 2]} is not TLS")
        if length == 0 or length > MAX_RECORD:
            raise ClientHelloError(f"record length {length} out of range 1-{MAX_RECORD}")
        if len(buf) - pos - RECORD_HEADER < length:
            return None
        out += buf[pos + RECORD_HEADER:pos + RECORD_HEADER + length]
        pos += RECORD_HEADER + length
        if wanted < 0 and len(out) >= 4:
            if out[0] != HANDSHAKE_CLIENT_HELLO:
                raise ClientHelloError(f"handshake type {out[0]} is not a ClientHello (1)")
            wanted = 4 + int.from_bytes(out[1:4], "big")
            if wanted > MAX_HELLO:
                raise ClientHelloError(f"ClientHello of {wanted - 4} bytes is over the {MAX_HELLO}-byte limit")


def parse_client_hello(buf: bytes) -> ClientHello | None:
    """The ClientHello at the start of ``buf``; None while incomplete; ClientHelloError if it cannot be one."""
    found = _handshake_bytes(buf)
    if found is None:
        return None
    message, consumed = found
    r = _Reader(message, "ClientHello")
    r.take(4, "handshake header")
    version = r.uint(2, "legacy_version")
    r.take(32, "random")
    r.vector(1, "legacy_session_id")
    suites = r.vector(2, "cipher_suites")
    if not suites or len(suites) % 2:
        raise ClientHelloError(f"ClientHello: cipher_suites length {len(suites)} is not a positive even number")
    if not r.vector(1, "legacy_compression_methods"):
        raise ClientHelloError("ClientHello: no compression method")
    if r.left() == 0:  # no extensions at all (SSL 3.0 style): no SNI
        return ClientHello("", version, consumed)
    exts = _Reader(r.vector(2, "extensions"), "ClientHello extensions")
    if r.left():
        raise ClientHelloError(f"ClientHello: {r.left()} bytes after the extensions")
    name = ""
    seen: set[int] = set()
    while exts.left():
        etype = exts.uint(2, "extension type")
        body = exts.vector(2, f"extension {etype}")
        if etype in seen:
            raise ClientHelloError(f"ClientHello: extension {etype} appears twice")
        seen.add(etype)
        if etype == EXT_SERVER_NAME:
            name = _server_name(body)
    return ClientHello(name, version, consumed)


def _server_name(body: bytes) -> str:
    """The host_name of a server_name extension body (RFC 6066 §3)."""
    r = _Reader(body, "server_name extension")
    names = _Reader(r.vector(2, "server_name_list"), "server_name_list")
    if r.left():
        raise ClientHelloError(f"server_name extension: {r.left()} bytes after the list")
    host = ""
    while names.left():
        kind = names.uint(1, "name_type")
        value = names.vector(2, "host_name")
        if kind != NAME_TYPE_HOST:
            continue
        if host:
            raise ClientHelloError("server_name extension: more than one host_name")
        host = _host_name(value)
    return host


def _host_name(raw: bytes) -> str:
    if not raw or len(raw) > 255:
        raise ClientHelloError(f"server_name: host_name of {len(raw)} bytes (1-255 allowed)")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ClientHelloError("server_name: host_name is not ASCII") from exc
    if not all(c.isalnum() or c in "-._" for c in text):
        raise ClientHelloError(f"server_name: host_name {text!r} has characters a DNS name cannot have")
    return text.lower().rstrip(".")
