"""The ClientHello parser (membrane.proxy.tls_hello) on hellos made by a real TLS stack (Python's ssl,
i.e. OpenSSL), split and fragmented, and fuzzed: random bytes and mutated real hellos only ever give
None, a ClientHello or ClientHelloError."""

from __future__ import annotations

import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from membrane.proxy.tls_hello import MAX_HELLO, ClientHello, ClientHelloError, parse_client_hello


def real_hello(server_name: str | None) -> bytes:
    """The first flight OpenSSL sends as a client asking for ``server_name`` (None: no SNI)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_side=False, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def refragment(hello: bytes, sizes: list[int]) -> bytes:
    """The same handshake message re-cut into records of the given payload sizes (the last takes the rest)."""
    body = hello[5:5 + int.from_bytes(hello[3:5], "big")]
    out, pos = b"", 0
    for n in [*sizes, len(body)]:
        piece = body[pos:pos + n]
        if not piece:
            break
        out += bytes([22, 3, 1]) + len(piece).to_bytes(2, "big") + piece
        pos += len(piece)
    return out


HELLO = real_hello("one.one.one.one")


def test_real_hello_names_its_server() -> None:
    got = parse_client_hello(HELLO)
    assert got == ClientHello("one.one.one.one", 0x0303, len(HELLO))


def test_name_is_lower_case_and_without_trailing_dot() -> None:
    assert parse_client_hello(real_hello("Example.COM")).server_name == "example.com"  # type: ignore[union-attr]


def test_hello_without_sni_has_empty_name() -> None:
    assert parse_client_hello(real_hello(None)).server_name == ""  # type: ignore[union-attr]


def test_every_prefix_is_incomplete() -> None:
    for n in range(len(HELLO)):
        assert parse_client_hello(HELLO[:n]) is None, n


def test_bytes_after_the_hello_are_not_consumed() -> None:
    got = parse_client_hello(HELLO + b"\x16\x03\x03\x00\x05junk!")
    assert got is not None and got.consumed == len(HELLO)


@pytest.mark.parametrize("sizes", [[1], [3], [4, 4], [50, 1, 100], [1] * 40])
def test_hello_fragmented_over_records(sizes: list[int]) -> None:
    data = refragment(HELLO, sizes)
    got = parse_client_hello(data)
    assert got is not None and got.server_name == "one.one.one.one" and got.consumed == len(data)
    assert parse_client_hello(data[:-1]) is None


@pytest.mark.parametrize("data, reason", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "record type 71"),
    (b"\x16\x02\x00\x00\x10", "record version 2.0"),
    (b"\x16\x03\x01\x00\x00", "record length 0"),
    (b"\x16\x03\x01\x48\x01", "record length 18433"),
    (b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", "handshake type 2"),
    (b"\x16\x03\x01\x00\x04\x01\xff\xff\xff", "over the 65536-byte limit"),
    (b"\x16\x03\x01\x00\x06\x01\x00\x00\x02\x03\x03", "random needs 32 bytes"),
])
def test_malformed_input_says_why(data: bytes, reason: str) -> None:
    with pytest.raises(ClientHelloError, match=reason):
        parse_client_hello(data)


def _with_sni_bytes(name: bytes) -> bytes:
    """HELLO with its SNI host_name bytes replaced by ``name`` (same length)."""
    at = HELLO.index(b"one.one.one.one")
    return HELLO[:at] + name + HELLO[at + len(name):]


def test_sni_with_illegal_characters_is_refused() -> None:
    with pytest.raises(ClientHelloError, match="characters a DNS name cannot have"):
        parse_client_hello(_with_sni_bytes(b"one.one/one.one"))
    with pytest.raises(ClientHelloError, match="not ASCII"):
        parse_client_hello(_with_sni_bytes(b"one.one.one.on\xff"))


def test_inner_length_past_its_container_is_refused() -> None:
    at = HELLO.index(b"one.one.one.one")  # host_name length sits just before the name
    bad = HELLO[:at - 2] + (200).to_bytes(2, "big") + HELLO[at:]
    with pytest.raises(ClientHelloError, match="host_name needs 200 bytes"):
        parse_client_hello(bad)


def _outcome(data: bytes) -> None:
    try:
        got = parse_client_hello(data)
    except ClientHelloError:
        return
    assert got is None or (isinstance(got, ClientHello) and 0 < got.consumed <= len(data) and len(got.server_name) <= 255)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes(data: bytes) -> None:
    _outcome(data)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_behind_a_handshake_header(data: bytes) -> None:
    _outcome(b"\x16\x03\x01" + len(data).to_bytes(2, "big") + data)
    _outcome(b"\x16\x03\x01" + (len(data) + 4).to_bytes(2, "big") + b"\x01" + len(data).to_bytes(3, "big") + data)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(HELLO) - 1), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, len(HELLO)))
def test_fuzz_mutated_real_hello(flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(HELLO)
    for pos, value in flips:
        data[pos] = value
    _outcome(bytes(data))
    _outcome(bytes(data[:cut]))


def test_limit_is_far_above_real_hellos() -> None:
    assert len(HELLO) < MAX_HELLO // 8
