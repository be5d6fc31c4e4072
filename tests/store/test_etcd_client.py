"""EtcdClient against a real etcd: key-value, prefixes, transactions, errors."""

from __future__ import annotations

import socket
import threading

import pytest

from membrane.store.errors import RevisionCompacted, StoreError, StoreUnavailable
from membrane.store.etcd import Compare, EtcdClient, Op, mod_revision_eq, value_eq, version_eq
from tests.etcd_fixture import EtcdServer, etcd_missing_reason, etcd_server, running_etcd  # noqa: F401


def test_put_get_roundtrip(client: EtcdClient, ns: str) -> None:
    rev = client.put(ns + "k", b"\x00\xffbinary")
    kv = client.get(ns + "k")
    assert kv is not None
    assert kv.value == b"\x00\xffbinary" and kv.key == ns + "k"
    assert kv.mod_revision == rev == kv.create_revision and kv.version == 1
    rev2 = client.put(ns + "k", "text")
    kv2 = client.get(ns + "k")
    assert kv2.text() == "text" and kv2.version == 2 and kv2.mod_revision == rev2 > rev
    assert kv2.create_revision == rev
    assert client.get(ns + "missing") is None


def test_get_at_revision_and_compacted(client: EtcdClient, ns: str) -> None:
    r1 = client.put(ns + "k", "1")
    client.put(ns + "k", "2")
    assert client.get(ns + "k", revision=r1).text() == "1"
    client.compact(client.status().revision)
    with pytest.raises(RevisionCompacted, match="compacted"):
        client.get(ns + "k", revision=r1)


def test_get_prefix_is_exact_sorted_and_paginated(client: EtcdClient, ns: str) -> None:
    for i in (3, 1, 4, 0, 2):
        client.put(f"{ns}p/{i}", str(i))
    client.put(f"{ns}p0", "sibling, not under p/")
    client.put(f"{ns}o", "before")
    kvs, rev = client.get_prefix(ns + "p/", page_size=2)
    assert [kv.key for kv in kvs] == [f"{ns}p/{i}" for i in range(5)]
    assert rev == client.status().revision
    assert client.get_prefix(ns + "p/")[0] == kvs
    assert client.get_prefix(ns + "nothing/") == ([], rev)


def test_paginated_listing_is_one_snapshot(client: EtcdClient, ns: str) -> None:
    for i in range(6):
        client.put(f"{ns}{i}", "a")
    kvs, rev = client.get_prefix(ns, page_size=2, revision=None)
    client.put(f"{ns}5", "changed")
    again, rev2 = client.get_prefix(ns, page_size=2, revision=rev)
    assert rev2 == rev and again == kvs


def test_delete_and_delete_prefix(client: EtcdClient, ns: str) -> None:
    for i in range(3):
        client.put(f"{ns}d/{i}", "x")
    client.put(f"{ns}keep", "x")
    assert client.delete(f"{ns}d/0") == 1
    assert client.delete(f"{ns}d/0") == 0
    assert client.delete_prefix(f"{ns}d/") == 2
    assert [kv.key for kv in client.get_prefix(ns)[0]] == [f"{ns}keep"]


def test_txn_success_and_failure_branches(client: EtcdClient, ns: str) -> None:
    k = ns + "cas"
    rev = client.put(k, "v1")
    res = client.txn([mod_revision_eq(k, rev)], [Op.put(k, "v2"), Op.get(k)], [Op.get(k)])
    assert res.succeeded and res.responses[0].kind == "put"
    assert res.responses[1].kvs[0].text() == "v2"
    # The same compare now fails: the failure branch runs and reads the current value.
    res2 = client.txn([mod_revision_eq(k, rev)], [Op.put(k, "v3")], [Op.get(k)])
    assert not res2.succeeded
    assert res2.responses[0].kind == "range" and res2.responses[0].kvs[0].text() == "v2"
    assert client.get(k).text() == "v2"
    assert client.txn([Compare.value(k) == b"v2"], [Op.delete(k)]).responses[0].deleted == 1
    assert client.get(k) is None


def test_txn_is_atomic(client: EtcdClient, ns: str) -> None:
    client.put(ns + "a", "old")
    res = client.txn([value_eq(ns + "a", "other")], [Op.put(ns + "a", "new"), Op.put(ns + "b", "new")])
    assert not res.succeeded
    assert client.get(ns + "a").text() == "old" and client.get(ns + "b") is None
    res = client.txn([], [Op.put(ns + "a", "new"), Op.put(ns + "b", "new"), Op.delete_prefix(ns + "zz")])
    assert res.succeeded
    assert client.get(ns + "a").mod_revision == client.get(ns + "b").mod_revision == res.revision


def test_create_if_absent_has_one_winner(client: EtcdClient, ns: str) -> None:
    key = ns + "identity/256"
    winners: list[str] = []
    barrier = threading.Barrier(6)

    def contend(name: str) -> None:
        barrier.wait()
        res = client.txn([version_eq(key, 0)], [Op.put(key, name)], [Op.get(key)])
        if res.succeeded:
            winners.append(name)

    threads = [threading.Thread(target=contend, args=(f"node{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert client.get(key).text() == winners[0]


def test_status(client: EtcdClient) -> None:
    st = client.status()
    assert st.version.startswith("3.") and st.revision > 0 and st.leader == st.member_id != 0


def test_empty_keys_are_refused(client: EtcdClient) -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        client.put("", "x")


def test_store_error_names_endpoint(client: EtcdClient, ns: str) -> None:
    client.put(ns + "a", "1")
    with pytest.raises(StoreError) as info:  # duplicate key in one txn: etcd refuses
        client.txn([], [Op.put(ns + "a", "1"), Op.put(ns + "a", "2")])
    assert client.endpoint in str(info.value) and "duplicate key" in str(info.value)
    assert not isinstance(info.value, StoreUnavailable)


def test_unreachable_endpoints(tmp_path) -> None:
    missing = EtcdClient(f"unix://{tmp_path}/etcd.sock:2379", timeout=1.0)
    with pytest.raises(StoreUnavailable, match=r"etcd unix://.*does not exist"):
        missing.get("/x")
    with pytest.raises(StoreUnavailable, match="does not exist"):
        missing.watch("/x")
    # A TCP port on loopback with nothing listening (bound, never listened: refused at once).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        refused = EtcdClient(f"http://127.0.0.1:{port}", timeout=1.0)
        with pytest.raises(StoreUnavailable, match=f"etcd http://127.0.0.1:{port}: .*refused"):
            refused.status()


def test_timeout_is_store_unavailable(tmp_path) -> None:
    path = f"{tmp_path}/silent.sock"
    with socket.socket(socket.AF_UNIX) as srv:
        srv.bind(path)
        srv.listen(1)  # accepts connections but never answers
        c = EtcdClient(f"unix://{path}", timeout=0.3)
        with pytest.raises(StoreUnavailable, match="timed out after 0.3s"):
            c.get("/x")


@pytest.mark.skipif(bool(etcd_missing_reason()), reason=etcd_missing_reason() or "etcd present")
def test_tcp_loopback_endpoint() -> None:
    with running_etcd(tcp=True) as srv:
        assert srv.endpoint.startswith("http://127.0.0.1:")
        c = EtcdClient(srv.endpoint)
        try:
            rev = c.put("/tcp/k", "v")
            with c.watch("/tcp/", start_revision=rev) as w:
                (ev,) = w.next_batch(timeout=5.0)
            assert ev.kv.value == b"v" and c.get("/tcp/k").mod_revision == rev
        finally:
            c.close()
