"""Endpoint identities and the ipcache entries they publish, against a real etcd (issue 16): a burst
of new pods is published in a few transactions, an unchanged run writes nothing, and changes are
published incrementally."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import pytest

from membrane.agent.identities import PUBLISH_BATCH, EndpointIdentities
from membrane.endpoint.model import STATE_READY, Endpoint, EndpointTable
from membrane.endpoint.start_stats import StageTimes
from membrane.store.etcd import EtcdClient
from membrane.store.kv import KV
from membrane.store.layout import StoreLayout
from membrane.store.watch import WatchEvent


class Net:
    """What EndpointIdentities uses of NodeNetwork."""

    def __init__(self) -> None:
        self.endpoints = EndpointTable()
        self.stats = StageTimes()
        self.lock = threading.RLock()

    def set_identity(self, container_id: str, ifname: str, identity: int) -> None:
        ep = self.endpoints.get(container_id, ifname)
        if ep is not None:
            ep.identity, ep.state = identity, STATE_READY


def _pod(name: str, app: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "labels": {"app": app}}, "spec": {}}


def _setup(client: EtcdClient, pods: int) -> tuple[EndpointIdentities, Net, dict[str, dict[str, Any]], StoreLayout, int]:
    layout = StoreLayout(f"t{uuid.uuid4().hex[:8]}")
    lease = client.lease_grant(60)
    net = Net()
    objects = {f"p{i}": _pod(f"p{i}", f"a{i % 3}") for i in range(pods)}
    for i in range(pods):
        net.endpoints.put(Endpoint(i + 1, f"c{i}", "eth0", "", "default", f"p{i}", f"10.1.{i // 250}.{i % 250 + 1}",
                                   f"lxc{i}", i + 2, "", ""))
    def pod_of(_ns: str, name: str) -> dict[str, Any] | None:
        looked_up.append(name)
        return objects.get(name)

    looked_up: list[str] = []
    ids = EndpointIdentities(client, layout, "n1", layout.cluster, net,  # type: ignore[arg-type]
                             pod_of, lambda _ns: {}, lambda: lease)
    ids.looked_up = looked_up  # type: ignore[attr-defined]
    return ids, net, objects, layout, lease


def _relabel(ids: EndpointIdentities, objects: dict[str, dict[str, Any]], name: str, app: str) -> None:
    """What the agent does on a pod event: the new object in the mirror, then the event."""
    objects[name] = _pod(name, app)
    ids.pods_changed([WatchEvent("PUT", KV(f"/membrane/x/resources/core/Pod/default/{name}", b"{}"), 1)])


def test_a_burst_is_published_in_batches_and_an_unchanged_run_writes_nothing(client: EtcdClient) -> None:
    ids, net, objects, layout, lease = _setup(client, 2 * PUBLISH_BATCH + 10)
    try:
        before = client.put(layout.prefix + "probe", "x")
        ids.sync()
        kvs, after = client.get_prefix(layout.ipcache_prefix)
        assert len(kvs) == len(objects)
        # 3 identities (one label set each: a 1-put transaction per new identity) + 3 ipcache batches
        assert after - before == 3 + 3
        values = {json.loads(kv.value)["identity"] for kv in kvs}
        assert len(values) == 3 and all(ep.state == STATE_READY for ep in net.endpoints.list())
        ids.sync()
        assert client.get_prefix(layout.ipcache_prefix)[1] == after  # nothing changed, nothing written
        # one pod relabelled, one endpoint gone: one transaction with exactly those changes
        _relabel(ids, objects, "p0", "a1")
        gone = net.endpoints.remove("c5", "eth0")
        ids.sync()
        kvs, last = client.get_prefix(layout.ipcache_prefix)
        assert len(kvs) == len(objects) - 1
        assert not any(kv.key.endswith(f"{gone.ipv4}%2F32") for kv in kvs)
        p0 = net.endpoints.get("c0", "eth0")
        assert p0.identity == net.endpoints.get("c1", "eth0").identity
        assert last - after == 1
    finally:
        client.lease_revoke(lease)
        client.delete_prefix(layout.prefix)


def test_a_run_looks_only_at_the_endpoints_and_pods_that_changed(client: EtcdClient) -> None:
    ids, net, objects, layout, lease = _setup(client, 50)
    looked_up: list[str] = ids.looked_up  # type: ignore[attr-defined]
    try:
        ids.sync()  # the first run: every endpoint
        assert len(looked_up) == 50
        looked_up.clear()
        ids.sync()
        assert looked_up == []  # nothing changed: no endpoint looked at
        objects["p50"] = _pod("p50", "a0")
        net.endpoints.put(Endpoint(51, "c50", "eth0", "", "default", "p50", "10.1.9.9", "lxc50", 99, "", ""))
        _relabel(ids, objects, "p7", "fresh")
        ids.sync()
        assert sorted(looked_up) == ["p50", "p7"]
        kvs, _ = client.get_prefix(layout.ipcache_prefix)
        by_ip = {kv.key.rsplit("/", 1)[1].replace("%2F", "/"): json.loads(kv.value)["identity"] for kv in kvs}
        assert by_ip["10.1.9.9/32"] == net.endpoints.get("c50", "eth0").identity == net.endpoints.get("c0", "eth0").identity
        fresh = net.endpoints.get("c7", "eth0").identity
        assert by_ip["10.1.0.8/32"] == fresh and fresh not in {by_ip["10.1.0.1/32"], by_ip["10.1.0.2/32"]}
        # the relabelled pod's old identity reference went (p7 was app a1, shared by others: still held)
        looked_up.clear()
        net.endpoints.remove("c50", "eth0")
        ids.sync()
        assert looked_up == []  # a removal needs no pod
        assert "10.1.9.9/32" not in {kv.key.rsplit("/", 1)[1].replace("%2F", "/")
                                     for kv in client.get_prefix(layout.ipcache_prefix)[0]}
    finally:
        client.lease_revoke(lease)
        client.delete_prefix(layout.prefix)


def test_a_failed_run_makes_the_next_one_look_at_everything(client: EtcdClient) -> None:
    ids, net, objects, layout, lease = _setup(client, 20)
    looked_up: list[str] = ids.looked_up  # type: ignore[attr-defined]
    try:
        ids.sync()
        real_txn = ids.client.txn
        ids.client.txn = lambda *_a, **_k: (_ for _ in ()).throw(OSError("etcd down"))  # type: ignore[method-assign]
        objects["p20"] = _pod("p20", "a0")
        net.endpoints.put(Endpoint(21, "c20", "eth0", "", "default", "p20", "10.1.9.20", "lxc20", 99, "", ""))
        with pytest.raises(OSError):
            ids.sync()
        ids.client.txn = real_txn  # type: ignore[method-assign]
        looked_up.clear()
        ids.sync()
        assert len(looked_up) == 21  # every endpoint, so the entry that failed is published now
        keys = {kv.key for kv in client.get_prefix(layout.ipcache_prefix)[0]}
        assert any(k.endswith("10.1.9.20%2F32") for k in keys)
    finally:
        client.lease_revoke(lease)
        client.delete_prefix(layout.prefix)


def test_runs_without_publishing_set_identities_and_one_publish_writes_them_in_one_transaction(
        client: EtcdClient) -> None:
    # issue 16: the agent's controller publishes after it has started the policy run, so the entries of
    # the pods that arrived meanwhile share a transaction
    ids, net, objects, layout, lease = _setup(client, 5)
    try:
        ids.sync()
        rev = client.get_prefix(layout.ipcache_prefix)[1]
        for i in (5, 6, 7):
            objects[f"p{i}"] = _pod(f"p{i}", "a0")
            net.endpoints.put(Endpoint(i + 1, f"c{i}", "eth0", "", "default", f"p{i}", f"10.1.8.{i}", f"lxc{i}",
                                       i + 2, "", ""))
            ids.sync(publish=False)
            assert net.endpoints.get(f"c{i}", "eth0").identity  # the identity is there before any publish
        assert client.get_prefix(layout.ipcache_prefix)[1] == rev  # nothing written yet
        net.endpoints.remove("c0", "eth0")
        ids.sync(publish=False)
        ids.publish()
        kvs, after = client.get_prefix(layout.ipcache_prefix)
        assert after - rev == 1  # three puts and a delete, one transaction
        assert {kv.key.rsplit("/", 1)[1] for kv in kvs} == {f"{ep.ipv4}%2F32" for ep in net.endpoints.list()}
        ids.publish()  # nothing owed: nothing written
        assert client.get_prefix(layout.ipcache_prefix)[1] == after
    finally:
        client.lease_revoke(lease)
        client.delete_prefix(layout.prefix)


def test_a_failed_publish_makes_the_next_run_publish_everything(client: EtcdClient) -> None:
    ids, net, objects, layout, lease = _setup(client, 4)
    try:
        ids.sync()
        objects["p4"] = _pod("p4", "a0")
        net.endpoints.put(Endpoint(5, "c4", "eth0", "", "default", "p4", "10.1.9.4", "lxc4", 9, "", ""))
        ids.sync(publish=False)
        real_txn = ids.client.txn
        ids.client.txn = lambda *_a, **_k: (_ for _ in ()).throw(OSError("etcd down"))  # type: ignore[method-assign]
        with pytest.raises(OSError):
            ids.publish()
        ids.client.txn = real_txn  # type: ignore[method-assign]
        ids.sync()
        keys = {kv.key for kv in client.get_prefix(layout.ipcache_prefix)[0]}
        assert any(k.endswith("10.1.9.4%2F32") for k in keys) and len(keys) == 5
    finally:
        client.lease_revoke(lease)
        client.delete_prefix(layout.prefix)
