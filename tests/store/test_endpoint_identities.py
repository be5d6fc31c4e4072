"""Endpoint identities and the ipcache entries they publish, against a real etcd (issue 16): a burst
of new pods is published in a few transactions, an unchanged run writes nothing, and changes are
published incrementally."""

from __future__ import annotations

import json
import uuid
from typing import Any

from membrane.agent.identities import PUBLISH_BATCH, EndpointIdentities
from membrane.endpoint.model import STATE_READY, Endpoint, EndpointTable
from membrane.endpoint.start_stats import StageTimes
from membrane.store.etcd import EtcdClient
from membrane.store.layout import StoreLayout


class Net:
    """What EndpointIdentities uses of NodeNetwork."""

    def __init__(self) -> None:
        self.endpoints = EndpointTable()
        self.stats = StageTimes()

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
    ids = EndpointIdentities(client, layout, "n1", layout.cluster, net,  # type: ignore[arg-type]
                             lambda _ns, name: objects.get(name), lambda _ns: {}, lambda: lease)
    return ids, net, objects, layout, lease


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
        objects["p0"] = _pod("p0", "a1")
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
