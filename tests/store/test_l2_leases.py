"""L2 announcement leases in a real etcd: first come first served, gone when the holder's etcd lease
ends, taken over in place by the same node after a restart, and listed as Lease objects."""

from __future__ import annotations

import time
import uuid

from membrane.store.etcd import EtcdClient
from membrane.store.l2_leases import L2Leases
from membrane.store.layout import StoreLayout
from membrane.store.resources import ResourceStore
from tests.etcd_fixture import etcd_server  # noqa: F401  (fixture)

NAME = "cilium-l2announce-default-web"


def test_one_holder_and_failover_on_expiry(client: EtcdClient) -> None:
    layout = StoreLayout(f"c{uuid.uuid4().hex[:8]}")
    w1, w2 = L2Leases(client, layout, "k8s-w1", 2), L2Leases(client, layout, "k8s-w2", 2)
    l1, l2 = client.lease_grant(2), client.lease_grant(2)
    assert w1.acquire(NAME, l1)
    assert not w2.acquire(NAME, l2)  # held: the second candidate loses
    holder, rev = w2.holders()[NAME]
    assert (holder.node, holder.etcd_lease) == ("k8s-w1", l1)
    lease_obj = ResourceStore(client, layout.cluster).get("coordination.k8s.io", "Lease", "kube-system", NAME)
    assert lease_obj is not None and lease_obj["spec"]["holderIdentity"] == "k8s-w1"
    assert lease_obj["spec"]["leaseDurationSeconds"] == 2
    deadline = time.monotonic() + 6  # w1 stops renewing: its key goes with its etcd lease
    while NAME in w2.holders():
        client.lease_keepalive_once(l2)
        assert time.monotonic() < deadline, "lease did not expire"
        time.sleep(0.2)
    assert w2.acquire(NAME, l2)
    assert w2.holders()[NAME][0].node == "k8s-w2"
    client.lease_revoke(l2)


def test_restarted_holder_takes_over_and_release(client: EtcdClient) -> None:
    layout = StoreLayout(f"c{uuid.uuid4().hex[:8]}")
    w1 = L2Leases(client, layout, "k8s-w1", 15)
    old, new = client.lease_grant(15), client.lease_grant(15)
    assert w1.acquire(NAME, old)
    _, rev = w1.holders()[NAME]
    assert not w1.take_over(NAME, new, rev - 1)  # stale revision: refused
    assert w1.take_over(NAME, new, rev)
    holder, rev = w1.holders()[NAME]
    assert holder.etcd_lease == new
    client.lease_revoke(old)
    assert NAME in w1.holders()  # no longer attached to the old lease
    assert w1.release(NAME, rev)
    assert w1.holders() == {}
    client.lease_revoke(new)
