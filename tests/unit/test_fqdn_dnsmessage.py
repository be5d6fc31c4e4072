"""The DNS proxy's message handling: queries, REFUSED/NXDOMAIN, answers' A/CNAME chains, TCP framing,
and a fuzz of both parsers (garbage and truncations are refused with a reason, never an exception)."""

from __future__ import annotations

import random

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from membrane.fqdn.dnsmessage import (
    NXDOMAIN,
    REFUSED,
    MalformedDNS,
    frame,
    parse_answer,
    parse_query,
    reject,
    unframe,
)
from membrane.fqdn.dnsproxy import DROPPED, FORWARDED, decide_answer, decide_query, rule_keys


def query(name: str = "one.one.one.one.", rdtype: str = "A") -> bytes:
    return dns.message.make_query(name, rdtype, id=4242).to_wire()


def answer(q: bytes, *rrsets: tuple[str, int, str, list[str]], rcode: int = 0) -> bytes:
    resp = dns.message.make_response(dns.message.from_wire(q))
    for name, ttl, rdtype, values in rrsets:
        resp.answer.append(dns.rrset.from_text_list(name, ttl, "IN", rdtype, values))
    resp.set_rcode(rcode)
    return resp.to_wire()


def test_a_query_is_read_case_insensitively_with_its_type():
    q = parse_query(query("One.ONE.one.one", "AAAA"))
    assert (q.id, q.name, q.qtypes) == (4242, "one.one.one.one.", ("AAAA",))


@pytest.mark.parametrize(("wire", "reason"), [
    (b"", "truncated header"),
    (b"\x00" * 11, "truncated header"),
    (b"\x00" * 12, "0 questions"),
    (answer(query()), "a response where a query was expected"),
    (b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03one", "Error"),  # question cut short
])
def test_what_is_not_one_standard_query_is_refused_with_a_reason(wire, reason):
    with pytest.raises(MalformedDNS, match=reason):
        parse_query(wire)


def test_a_notify_or_update_is_not_proxied():
    msg = dns.message.make_query("a.example.", "SOA")
    msg.set_opcode(dns.opcode.NOTIFY)
    with pytest.raises(MalformedDNS, match="opcode NOTIFY"):
        parse_query(msg.to_wire())


@pytest.mark.parametrize("rcode", [REFUSED, NXDOMAIN])
def test_a_denied_query_gets_the_proxy_s_own_answer(rcode):
    resp = dns.message.from_wire(reject(parse_query(query("ipinfo.io.")), rcode))
    assert resp.id == 4242 and resp.flags & dns.flags.QR and resp.rcode() == rcode
    assert resp.question[0].name.to_text() == "ipinfo.io." and not resp.answer


def test_an_answer_follows_the_cname_chain_and_keeps_the_lowest_ttl():
    q = query("www.example.com.")
    a = parse_answer(answer(q, ("www.example.com.", 300, "CNAME", ["edge.CDN.example.net."]),
                            ("edge.cdn.example.net.", 60, "A", ["192.0.2.7", "192.0.2.8"]),
                            ("unrelated.example.", 10, "A", ["198.51.100.1"])), parse_query(q))
    assert sorted(a.ips) == ["192.0.2.7", "192.0.2.8"] and a.ttl == 60  # an RRset has no order
    assert a.cnames == ("edge.cdn.example.net.",) and a.names == ("www.example.com.", "edge.cdn.example.net.")
    assert a.rrtypes == ("CNAME", "A") and a.rcode == 0


def test_a_cname_loop_ends():
    q = query("a.example.")
    a = parse_answer(answer(q, ("a.example.", 30, "CNAME", ["b.example."]), ("b.example.", 30, "CNAME", ["a.example."])))
    assert a.cnames == ("b.example.",) and a.ips == ()


def test_an_answer_to_another_query_is_refused():
    with pytest.raises(MalformedDNS, match="does not match"):
        parse_answer(answer(query("b.example.")), parse_query(query("a.example.")))


def test_nxdomain_is_an_answer_with_nothing_to_learn():
    q = query("nope.example.")
    d = decide_answer(answer(q, rcode=dns.rcode.NXDOMAIN), parse_query(q))
    assert d.answer is not None and d.learned == [] and d.record is not None
    assert d.record.summary() == "DNS Answer RCode: Non-Existent Domain TTL: 0 (Proxy nope.example. A)"


def test_rules_decide_forward_or_refuse_and_say_so_in_the_record():
    keys = rule_keys([{"matchName": "one.one.one.one"}, {"matchPattern": "*.*.svc.cluster.local"}])
    ok = decide_query(query("ONE.one.one.one."), keys)
    assert ok.forward and ok.reply is None and ok.record is not None and ok.record.verdict == FORWARDED
    assert ok.record.summary() == "DNS Query one.one.one.one. A"
    assert decide_query(query("kube-dns.kube-system.svc.cluster.local."), keys).forward
    no = decide_query(query("ipinfo.io."), keys)
    assert not no.forward and no.record is not None and no.record.verdict == DROPPED
    assert dns.message.from_wire(no.reply).rcode() == REFUSED  # type: ignore[arg-type]
    nx = decide_query(query("ipinfo.io."), keys, NXDOMAIN)
    assert dns.message.from_wire(nx.reply).rcode() == NXDOMAIN  # type: ignore[arg-type]
    bad = decide_query(b"\xde\xad", keys)
    assert bad.query is None and not bad.forward and bad.reply is None and "truncated" in bad.error


def test_every_name_of_the_chain_is_learned_with_the_addresses():
    q = query("www.example.com.")
    d = decide_answer(answer(q, ("www.example.com.", 300, "CNAME", ["edge.example.net."]),
                             ("edge.example.net.", 60, "A", ["192.0.2.7"])), parse_query(q))
    assert d.learned == [("www.example.com.", ("192.0.2.7",), 60), ("edge.example.net.", ("192.0.2.7",), 60)]
    assert d.record is not None and d.record.to_dict() == {
        "query": "www.example.com.", "observation_source": "proxy", "qtypes": ["A"], "ips": ["192.0.2.7"],
        "ttl": 60, "cnames": ["edge.example.net."], "rcode": 0, "rrtypes": ["CNAME", "A"]}
    assert d.record.summary() == 'DNS Answer "192.0.2.7" CNAMEs: "edge.example.net." TTL: 60 (Proxy www.example.com. A)'


def test_tcp_frames_split_anywhere_are_reassembled():
    stream = frame(query("a.example.")) + frame(query("b.example."))
    for cut in range(len(stream) + 1):
        first, rest = unframe(stream[:cut])
        second, tail = unframe(rest + stream[cut:])
        assert [parse_query(m).name for m in first + second] == ["a.example.", "b.example."] and tail == b""
    with pytest.raises(MalformedDNS, match="does not fit"):
        frame(b"x" * 65536)


# ---- fuzz: the parsers refuse, never crash ------------------------------------------------------------------------

@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_garbage_is_refused_by_both_parsers(data):
    for parse in (parse_query, parse_answer):
        try:
            parse(data)
        except MalformedDNS:
            pass
    keys = rule_keys([{"matchPattern": "*"}])
    decide_query(data, keys)


def test_every_truncation_and_bit_flip_of_real_messages_is_refused_or_parsed():
    q = query("www.example.com.")
    a = answer(q, ("www.example.com.", 300, "CNAME", ["edge.example.net."]),
               ("edge.example.net.", 60, "A", ["192.0.2.7", "192.0.2.8"]))
    rng = random.Random(12)
    corpus = [w[:n] for w in (q, a) for n in range(len(w))]
    for w in (q, a):
        for _ in range(400):
            b = bytearray(w)
            for _ in range(rng.randint(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            corpus.append(bytes(b))
    refused = 0
    for data in corpus:
        for parse in (parse_query, parse_answer):
            try:
                parse(data)
            except MalformedDNS:
                refused += 1
        decide_answer(data, parse_query(q))
    assert refused > len(corpus)  # the truncations alone are refused by both
