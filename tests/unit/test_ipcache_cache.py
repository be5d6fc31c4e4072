"""The ipcache model: precedence, longest-prefix match, diff and ``bpf ipcache list`` rows (§11.5)."""

from __future__ import annotations

import pytest

from membrane.ipcache.cache import (
    IPCache,
    IPCacheEntry,
    Source,
    cidr_entries,
    merge,
    node_entries,
    world_entries,
)
from membrane.ipcache.render import HEADER, entry_value, list_rows, render_list

LOCAL_ID = (1 << 24) + 1


def lab_cache() -> IPCache:
    return merge([
        node_entries("k8s-ctr", ["192.168.10.100"], own_node="k8s-ctr"),
        node_entries("k8s-w1", ["192.168.10.101"], own_node="k8s-ctr", tunnel=True),
        [IPCacheEntry.of("10.0.0.12", 300, Source.LOCAL, "k8s-ctr")],
        [IPCacheEntry.of("10.0.1.23", 301, Source.KVSTORE, "k8s-w1", "192.168.10.101")],
        cidr_entries({"10.0.0.0/8": LOCAL_ID}),
    ])


def test_node_ips_are_host_or_remote_node() -> None:
    cache = lab_cache()
    assert cache.identity_of("192.168.10.100") == 1
    assert cache.identity_of("192.168.10.101") == 6
    w1 = cache.get("192.168.10.101/32")
    assert w1 is not None and w1.node == "k8s-w1" and w1.tunnel_endpoint == "192.168.10.101"
    own = node_entries("k8s-ctr", ["192.168.10.100/24"], own_node="k8s-ctr", tunnel=True)
    assert own[0].key == "192.168.10.100/32" and own[0].tunnel_endpoint == ""


def test_longest_prefix_match() -> None:
    cache = lab_cache()
    assert cache.identity_of("10.0.0.12") == 300
    assert cache.identity_of("10.0.1.23") == 301
    assert cache.identity_of("10.9.9.9") == LOCAL_ID  # covered by the CIDR policy prefix
    assert cache.identity_of("8.8.8.8") == 2  # world default
    assert cache.identity_of("2001:db8::1") == 2
    assert IPCache().identity_of("8.8.8.8") == 0
    assert merge([], world_default=False).longest_prefix_match("1.2.3.4") is None


def test_precedence_local_over_kvstore_over_cidr_over_world() -> None:
    prefix = "10.0.0.5/32"
    entries = [
        IPCacheEntry.of(prefix, 2, Source.WORLD),
        IPCacheEntry.of(prefix, LOCAL_ID, Source.CIDR),
        IPCacheEntry.of(prefix, 400, Source.KVSTORE, "k8s-w1"),
        IPCacheEntry.of(prefix, 300, Source.LOCAL, "k8s-ctr"),
    ]
    for rotation in range(len(entries)):  # the result never depends on input order
        cache = merge([entries[rotation:] + entries[:rotation]])
        assert cache.identity_of("10.0.0.5") == 300
    assert merge([entries[:3]]).identity_of("10.0.0.5") == 400
    assert merge([entries[:2]]).identity_of("10.0.0.5") == LOCAL_ID
    world = merge([[IPCacheEntry.of("0.0.0.0/0", 77, Source.CIDR)]])
    assert world.identity_of("1.1.1.1") == 77  # any real source beats the world default


def test_dual_stack_world() -> None:
    cache = merge([], dual_stack=True)
    assert cache.identity_of("1.1.1.1") == 9 and cache.identity_of("::1") == 10
    assert [e.identity for e in world_entries()] == [2, 2]


def test_diff() -> None:
    old = lab_cache()
    new = merge([
        node_entries("k8s-ctr", ["192.168.10.100"], own_node="k8s-ctr"),
        node_entries("k8s-w1", ["192.168.10.101"], own_node="k8s-ctr", tunnel=True),
        [IPCacheEntry.of("10.0.0.12", 302, Source.LOCAL, "k8s-ctr")],
        cidr_entries({"10.0.0.0/8": LOCAL_ID}),
    ])
    upserts, deletes = new.diff(old)
    assert [(e.key, e.identity) for e in upserts] == [("10.0.0.12/32", 302)]
    assert [e.key for e in deletes] == ["10.0.1.23/32"]
    assert new.diff(new) == ([], [])
    assert new != old and new == merge([list(new)])


def test_entry_validation_and_store_value() -> None:
    entry = IPCacheEntry.of("10.0.1.23", 301, Source.KVSTORE, "k8s-w1", "192.168.10.101")
    assert entry.to_dict() == {"identity": 301, "node": "k8s-w1", "tunnelEndpoint": "192.168.10.101"}
    assert IPCacheEntry.from_dict("10.0.1.23/32", entry.to_dict()) == entry
    with pytest.raises(ValueError, match="identity must be an integer"):
        IPCacheEntry.from_dict("10.0.0.1", {"identity": "x"})
    with pytest.raises(ValueError, match="invalid IP"):
        IPCacheEntry.of("10.0.0.300", 1)
    with pytest.raises(ValueError):
        IPCacheEntry.of("10.0.0.1", 1, tunnel_endpoint="nope")
    assert "10.0.1.23/32" in lab_cache() and "1.2.3.4/32" not in lab_cache()


def test_list_rows_in_cilium_dbg_shape() -> None:
    rows = list_rows(lab_cache())
    assert rows[0] == HEADER == ("IP PREFIX/ADDRESS", "IDENTITY")
    assert rows[1:] == [
        ("0.0.0.0/0", "identity=2 encryptkey=0 tunnelendpoint=0.0.0.0 flags=<none>"),
        ("10.0.0.0/8", f"identity={LOCAL_ID} encryptkey=0 tunnelendpoint=0.0.0.0 flags=<none>"),
        ("10.0.0.12/32", "identity=300 encryptkey=0 tunnelendpoint=0.0.0.0 flags=<none>"),
        ("10.0.1.23/32", "identity=301 encryptkey=0 tunnelendpoint=192.168.10.101 flags=<none>"),
        ("192.168.10.100/32", "identity=1 encryptkey=0 tunnelendpoint=0.0.0.0 flags=<none>"),
        ("192.168.10.101/32", "identity=6 encryptkey=0 tunnelendpoint=192.168.10.101 flags=<none>"),
        ("::/0", "identity=2 encryptkey=0 tunnelendpoint=:: flags=<none>"),
    ]
    assert render_list([], header=True) == "IP PREFIX/ADDRESS\tIDENTITY\n"
    assert entry_value(IPCacheEntry.of("10.0.0.1", 5), flags=["hastunnel"]).endswith("flags=hastunnel")
