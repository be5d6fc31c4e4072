"""The DNS cache and the FQDN identities of learned IPs (cilium-semantics §4.2)."""

from __future__ import annotations

import pytest

from membrane.fqdn.cache import DNSCache, canonical_name
from membrane.fqdn.identities import FQDN_MIN_IDENTITY, FQDNIdentities, ip_labels
from membrane.model.fqdn import key_matches, selector_key


def test_names_are_lower_case_with_the_trailing_dot():
    assert canonical_name("One.One.one.one") == "one.one.one.one."
    assert canonical_name("cilium.io.") == "cilium.io."


def test_an_answer_lives_for_its_ttl_and_a_new_answer_refreshes_it():
    c = DNSCache()
    assert c.update(7, "one.one.one.one", ["1.1.1.1", "1.0.0.1"], ttl=30, now=100.0)
    assert c.lookup("ONE.one.one.one.") == {"1.1.1.1", "1.0.0.1"}
    assert c.expire(129.0) == []
    assert not c.update(7, "one.one.one.one", ["1.1.1.1"], ttl=30, now=120.0)  # nothing new
    gone = c.expire(131.0)
    assert [(e.name, e.ip) for e in gone] == [("one.one.one.one.", "1.0.0.1")]
    assert c.lookup("one.one.one.one") == {"1.1.1.1"}
    assert [e.ip for e in c.expire(150.0)] == ["1.1.1.1"]
    assert len(c) == 0 and c.ips() == set()


def test_min_ttl_stretches_short_answers():
    c = DNSCache(min_ttl=3600)
    c.update(1, "a.example", ["192.0.2.1"], ttl=5, now=0.0)
    assert c.expire(3599.0) == []
    assert len(c.expire(3600.0)) == 1


def test_the_ip_cap_per_name_evicts_the_least_recently_seen_first():
    c = DNSCache(max_ips_per_name=2)
    c.update(1, "a.example", ["192.0.2.1"], ttl=60, now=0.0)
    c.update(1, "a.example", ["192.0.2.2"], ttl=60, now=1.0)
    c.update(1, "a.example", ["192.0.2.1"], ttl=60, now=2.0)  # .1 seen again: now .2 is the oldest
    c.update(1, "a.example", ["192.0.2.3"], ttl=60, now=3.0)
    assert c.lookup("a.example") == {"192.0.2.1", "192.0.2.3"}
    assert c.names_of("192.0.2.2") == set()
    # the cap is per endpoint: another endpoint keeps its own
    c.update(2, "a.example", ["192.0.2.2"], ttl=60, now=4.0)
    assert c.lookup("a.example", endpoint=2) == {"192.0.2.2"}


def test_an_expired_ip_a_connection_uses_stays_as_a_zombie_until_it_is_idle():
    c = DNSCache()
    c.update(1, "a.example", ["192.0.2.1", "192.0.2.2"], ttl=10, now=0.0)
    busy = {"192.0.2.1"}
    gone = c.expire(11.0, in_use=lambda ip: ip in busy)
    assert [e.ip for e in gone] == ["192.0.2.2"]
    assert c.lookup("a.example") == set()  # not an answer any more
    assert c.names_of("192.0.2.1") == {"a.example."}  # but still selected
    assert [e.zombie for e in c.entries()] == [True]
    busy.clear()
    assert [e.ip for e in c.expire(12.0, in_use=lambda ip: ip in busy)] == ["192.0.2.1"]


def test_forgetting_an_endpoint_keeps_the_others():
    c = DNSCache()
    c.update(1, "a.example", ["192.0.2.1"], ttl=10, now=0.0)
    c.update(2, "a.example", ["192.0.2.1"], ttl=10, now=0.0)
    assert len(c.forget_endpoint(1)) == 1
    assert c.names_of("192.0.2.1") == {"a.example."}
    assert [e.endpoint for e in c.entries()] == [2]


def test_bad_settings_and_addresses_are_refused():
    with pytest.raises(ValueError, match="min-ttl"):
        DNSCache(min_ttl=-1)
    with pytest.raises(ValueError, match="max-ip-per-hostname"):
        DNSCache(max_ips_per_name=0)
    with pytest.raises(ValueError):
        DNSCache().update(1, "a.example", ["not-an-ip"], ttl=1, now=0.0)


@pytest.mark.parametrize(("selector", "name", "selected"), [
    ({"matchName": "one.one.one.one"}, "ONE.one.one.one.", True),
    ({"matchName": "one.one.one.one."}, "one.one.one.one", True),
    ({"matchName": "one.one.one.one"}, "x.one.one.one.one", False),
    ({"matchPattern": "*"}, "anything.at.all", True),
    ({"matchPattern": "*.cilium.io"}, "a.cilium.io", True),
    ({"matchPattern": "*.cilium.io"}, "cilium.io", False),
    ({"matchPattern": "*.cilium.io"}, "a.b.cilium.io", False),
    ({"matchPattern": "*cilium.io"}, "subcilium.io", True),
    ({"matchPattern": "*cilium.io"}, "www.cilium.io", False),
    ({"matchPattern": "sub*.cilium.io"}, "sub.cilium.io", True),
    ({"matchPattern": "**.cilium.io"}, "a.b.cilium.io", True),
    ({"matchPattern": "**.cilium.io"}, "cilium.io", False),
    ({"matchPattern": "*.*.svc.cluster.local"}, "kube-dns.kube-system.svc.cluster.local.", True),
    ({"matchPattern": "*.cilium.io"}, "a.cilium.io.\n", False),
])
def test_selector_keys_match_as_cilium_patterns(selector, name, selected):
    assert key_matches(selector_key(selector), name) is selected


def test_ips_some_selector_selects_get_identities_labelled_with_the_selectors():
    c = DNSCache()
    ids = FQDNIdentities()
    c.update(1, "one.one.one.one", ["1.1.1.1"], ttl=60, now=0.0)
    c.update(1, "ipinfo.io", ["34.117.59.81"], ttl=60, now=0.0)
    ch = ids.update({"one.one.one.one", "*.one.one.one"}, c)
    n = ids.identity_of("1.1.1.1")
    assert n == FQDN_MIN_IDENTITY
    assert ch.upserted == {n: {"cidr:1.1.1.1/32": "", "fqdn:*.one.one.one": "", "fqdn:one.one.one.one": "",
                               "reserved:world": ""}}
    assert ids.identity_of("34.117.59.81") is None  # no selector names it: stays world
    assert ids.prefixes() == {"1.1.1.1/32": n}
    # nothing changed: nothing to do
    assert not ids.update({"one.one.one.one", "*.one.one.one"}, c)
    # a selector goes: same number, new labels
    ch = ids.update({"one.one.one.one"}, c)
    assert ch.upserted == {n: ip_labels("1.1.1.1", ["one.one.one.one"])} and not ch.removed
    # the name expires: the identity goes, and its number is free again
    c.expire(61.0)
    ch = ids.update({"one.one.one.one"}, c)
    assert ch.removed == {n} and ids.prefixes() == {}
    c.update(1, "ipinfo.io", ["34.117.59.81"], ttl=60, now=70.0)
    ids.update({"ipinfo.io"}, c)
    assert ids.identity_of("34.117.59.81") == n


def test_a_cname_chain_name_selects_the_ips_too():
    c = DNSCache()
    c.update(1, "www.example.com", ["192.0.2.7"], ttl=60, now=0.0)
    c.update(1, "edge.cdn.example.net", ["192.0.2.7"], ttl=60, now=0.0)
    ids = FQDNIdentities()
    ids.update({"*.cdn.example.net"}, c)
    assert ids.selectors_of("192.0.2.7") == {"*.cdn.example.net"}


def test_ipv6_labels_write_colons_as_dashes():
    assert "cidr:2001-db8--1/128" in ip_labels("2001:db8::1", ["a.example"])


def test_cache_list_rows_group_ips_per_lookup_and_mark_zombies():
    from membrane.cli.fqdn_cmds import render_cache, select
    from membrane.fqdn.cache import cache_rows
    c = DNSCache()
    c.update(7, "one.one.one.one", ["1.1.1.1", "1.0.0.1"], ttl=300, now=100.0)
    c.update(9, "ipinfo.io", ["34.117.59.81"], ttl=60, now=100.0)
    c.expire(161.0, in_use=lambda ip: True)  # ipinfo.io is past its TTL but a connection uses it
    rows = cache_rows(c, now=170.0, wall_now=1_700_000_000.0)
    assert rows == [
        {"endpoint": 7, "source": "lookup", "fqdn": "one.one.one.one.", "ttl": 300,
         "expiration": 1_700_000_000.0 + 230.0, "ips": ["1.0.0.1", "1.1.1.1"]},
        {"endpoint": 9, "source": "connection", "fqdn": "ipinfo.io.", "ttl": 60,
         "expiration": 1_700_000_000.0 - 10.0, "ips": ["34.117.59.81"]}]
    assert select(rows, None, "*.one.one", None) == []
    assert [r["endpoint"] for r in select(rows, None, "*.one.one.one", None)] == [7]
    assert [r["endpoint"] for r in select(rows, None, "", "connection")] == [9]
    assert [r["endpoint"] for r in select(rows, 9, "", None)] == [9]
    text = render_cache(rows).splitlines()
    assert text[0].split() == ["Endpoint", "Source", "FQDN", "TTL", "ExpirationTime", "IPs"]
    assert text[1].split() == ["7", "lookup", "one.one.one.one.", "300", "2023-11-14T22:17:10.000Z", "1.0.0.1,1.1.1.1"]


def test_hubble_names_an_ip_by_what_the_dns_proxy_learned():
    from membrane.agent.flows import PodIndex

    class Pods:
        def items(self) -> list:
            return []

        def subscribe(self, _cb: object) -> None:
            pass

    c = DNSCache()
    c.update(7, "one.one.one.one", ["1.1.1.1"], ttl=60, now=0.0)
    index = PodIndex(Pods(), lambda ip: 16777217 if ip == "1.1.1.1" else 0, "default")  # type: ignore[arg-type]
    assert not index.lookup("1.1.1.1").names  # type: ignore[union-attr]
    index.names_of = c.names_of
    info = index.lookup("1.1.1.1")
    assert info is not None and list(info.names) == ["one.one.one.one"] and info.identity == 16777217
    assert index.lookup("9.9.9.9") is None
