"""The DNS proxy's view of wire messages (dnspython): queries, refusals and the answers' records.

A query the proxy can act on is a standard query (QR=0, opcode QUERY) with exactly one question;
anything else is :class:`MalformedDNS` with the reason, and the proxy drops it. A denied query is
answered by the proxy itself with REFUSED (rcode 5), or NXDOMAIN (3) with
``tofqdns-dns-reject-response-code=nameError``. An answer is read for its rcode, its A/AAAA records
and the CNAME chain from the question's name: every name of the chain resolves to the chain's
addresses (a ``toFQDNs`` on the alias or on the target both select them). TCP DNS frames each message
with a two-byte length (RFC 1035 §4.2.2).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from membrane.fqdn.cache import canonical_name

REFUSED = int(dns.rcode.REFUSED)
NXDOMAIN = int(dns.rcode.NXDOMAIN)
REJECT_CODES = {"refused": REFUSED, "nameError": NXDOMAIN}  # tofqdns-dns-reject-response-code
MAX_MESSAGE = 65535
MAX_CHAIN = 16  # CNAME hops followed; longer chains are loops or abuse
RCODE_TEXT = {0: "No Error", 1: "Format Error", 2: "Server Failure", 3: "Non-Existent Domain",
              4: "Not Implemented", 5: "Query Refused"}  # Hubble's names (metrics, summaries)


class MalformedDNS(ValueError):
    """A message the proxy cannot act on; the text says why."""


@dataclass(frozen=True)
class Query:
    id: int
    name: str  # lower case, trailing dot
    qtypes: tuple[str, ...]
    message: dns.message.Message = field(repr=False, compare=False)


@dataclass(frozen=True)
class Answer:
    id: int
    name: str
    rcode: int
    qtypes: tuple[str, ...]
    ips: tuple[str, ...] = ()  # the chain's A/AAAA addresses, in answer order
    ttl: int = 0  # the lowest TTL among the chain's records (what the cache keeps them for)
    cnames: tuple[str, ...] = ()  # the chain after the question's name
    rrtypes: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Every name the addresses are learned for: the question's and each alias target."""
        return (self.name, *self.cnames)

    @property
    def rcode_text(self) -> str:
        return RCODE_TEXT.get(self.rcode, dns.rcode.to_text(self.rcode))  # type: ignore[arg-type]


def _from_wire(wire: bytes) -> dns.message.Message:
    if len(wire) > MAX_MESSAGE:
        raise MalformedDNS(f"message of {len(wire)} bytes is larger than {MAX_MESSAGE}")
    if len(wire) < 12:
        raise MalformedDNS(f"truncated header: {len(wire)} of 12 bytes")
    try:
        return dns.message.from_wire(wire)
    except dns.exception.DNSException as exc:
        raise MalformedDNS(f"{type(exc).__name__}: {exc}") from None
    except (ValueError, UnicodeError, IndexError, struct.error) as exc:  # defensive: never let garbage escape
        raise MalformedDNS(f"{type(exc).__name__}: {exc}") from None


def _question(msg: dns.message.Message) -> tuple[str, tuple[str, ...]]:
    if len(msg.question) != 1:
        raise MalformedDNS(f"{len(msg.question)} questions (exactly one is supported)")
    q = msg.question[0]
    try:
        name = canonical_name(q.name.to_text(omit_final_dot=True) or ".")
    except (dns.exception.DNSException, UnicodeError) as exc:
        raise MalformedDNS(f"question name: {exc}") from None
    return name, (dns.rdatatype.to_text(q.rdtype),)


def parse_query(wire: bytes) -> Query:
    msg = _from_wire(wire)
    if msg.flags & dns.flags.QR:
        raise MalformedDNS("a response where a query was expected")
    if msg.opcode() != dns.opcode.QUERY:
        raise MalformedDNS(f"opcode {dns.opcode.to_text(msg.opcode())} (only QUERY is proxied)")
    name, qtypes = _question(msg)
    return Query(msg.id, name, qtypes, msg)


def reject(query: Query, rcode: int = REFUSED) -> bytes:
    """The proxy's own answer to a denied query: the question echoed, no records, ``rcode``."""
    resp = dns.message.make_response(query.message)
    resp.flags |= dns.flags.RA
    resp.set_rcode(rcode)  # type: ignore[arg-type]
    return resp.to_wire()


def parse_answer(wire: bytes, query: Query | None = None) -> Answer:
    """An upstream answer's records; with ``query``, it must answer that query (id and name)."""
    msg = _from_wire(wire)
    if not msg.flags & dns.flags.QR:
        raise MalformedDNS("a query where a response was expected")
    name, qtypes = _question(msg)
    if query is not None and (msg.id != query.id or name != query.name):
        raise MalformedDNS(f"answer for id {msg.id} {name} does not match query id {query.id} {query.name}")
    records: dict[str, list[dns.rrset.RRset]] = {}
    rrtypes: list[str] = []
    for rrset in msg.answer:
        records.setdefault(canonical_name(rrset.name.to_text(omit_final_dot=True) or "."), []).append(rrset)
        rrtypes.append(dns.rdatatype.to_text(rrset.rdtype))
    chain, ips, ttls = [name], [], []
    current = name
    for _ in range(MAX_CHAIN):
        target = None
        for rrset in records.get(current, ()):
            if rrset.rdclass != dns.rdataclass.IN:
                continue
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                ttls.append(rrset.ttl)
                for rd in rrset:
                    ip = str(ipaddress.ip_address(rd.address))
                    if ip not in ips:
                        ips.append(ip)
            elif rrset.rdtype == dns.rdatatype.CNAME and target is None:
                ttls.append(rrset.ttl)
                target = canonical_name(rrset[0].target.to_text(omit_final_dot=True) or ".")
        if target is None or target in chain:
            break
        chain.append(target)
        current = target
    return Answer(msg.id, name, msg.rcode(), qtypes, tuple(ips), min(ttls) if ips and ttls else 0,
                  tuple(chain[1:]), tuple(dict.fromkeys(rrtypes)))


# ---- TCP framing ------------------------------------------------------------------------------------------

def frame(wire: bytes) -> bytes:
    if len(wire) > MAX_MESSAGE:
        raise MalformedDNS(f"message of {len(wire)} bytes does not fit a TCP DNS frame")
    return struct.pack("!H", len(wire)) + wire


def unframe(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete messages at the front of a TCP stream buffer, and the incomplete rest."""
    out: list[bytes] = []
    while len(buffer) >= 2:
        (size,) = struct.unpack_from("!H", buffer)
        if len(buffer) < 2 + size:
            break
        out.append(buffer[2:2 + size])
        buffer = buffer[2 + size:]
    return out, buffer
