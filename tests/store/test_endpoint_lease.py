"""The agent's endpoint lease against a real etcd (issue 18.1): a restarted agent renews the lease of
its previous run, so nothing published under it is withdrawn; a lease that is gone is replaced."""

from __future__ import annotations

from pathlib import Path

from membrane.agent.node_status import NODE_LEASE_TTL, NodeStatus
from membrane.ipcache.ownership import ENDPOINT_LEASE_TTL
from membrane.store.etcd import EtcdClient
from membrane.store.mirror import Mirror
from membrane.store.resources import ResourceStore


def _status(client: EtcdClient, ns: str, state_dir: Path) -> NodeStatus:
    return NodeStatus(client, ResourceStore(client, "default"), Mirror(client, ns + "nodes/"), ns, "n1",
                      str(state_dir), lambda: None, lambda: "")


def test_a_restart_keeps_the_endpoint_lease_and_what_hangs_off_it(client: EtcdClient, ns: str,
                                                                  tmp_path: Path) -> None:
    first = _status(client, ns, tmp_path)
    first.start()
    assert first.endpoint_lease != first.liveness_lease
    assert NODE_LEASE_TTL < client.lease_time_to_live(first.endpoint_lease) <= ENDPOINT_LEASE_TTL
    client.put(ns + "ipcache/10.0.1.5%2F32", '{"identity": 300, "node": "n1"}', lease=first.endpoint_lease)
    client.lease_revoke(first.liveness_lease)  # the agent dies: its liveness lease goes, the endpoint lease stays

    second = _status(client, ns, tmp_path)
    second.start()
    assert second.endpoint_lease == first.endpoint_lease
    assert client.get(ns + "ipcache/10.0.1.5%2F32") is not None
    for lease in (first.liveness_lease, second.liveness_lease, second.endpoint_lease):
        client.lease_revoke(lease)


def test_a_lost_endpoint_lease_is_replaced_and_remembered(client: EtcdClient, ns: str, tmp_path: Path) -> None:
    first = _status(client, ns, tmp_path)
    first.start()
    client.lease_revoke(first.endpoint_lease)
    second = _status(client, ns, tmp_path)
    second.start()
    assert second.endpoint_lease not in (0, first.endpoint_lease)
    assert (tmp_path / "endpoint-lease").read_text() == str(second.endpoint_lease)
    for lease in (first.liveness_lease, second.liveness_lease, second.endpoint_lease):
        client.lease_revoke(lease)
