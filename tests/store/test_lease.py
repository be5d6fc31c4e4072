"""Leases against a real etcd: expiry removes keys, keep-alive holds them, LeaseKeeper re-grants."""

from __future__ import annotations

import time

import pytest

from membrane.store.etcd import EtcdClient
from membrane.store.lease import LeaseKeeper
from tests.etcd_fixture import EtcdServer, etcd_server  # noqa: F401  (fixture)


def wait_until(pred, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


def test_lease_expiry_removes_keys(client: EtcdClient, ns: str) -> None:
    lease = client.lease_grant(1)  # etcd rounds very short TTLs up (to 2s here)
    client.put(ns + "node", "up", lease=lease)
    assert client.get(ns + "node").lease == lease
    assert wait_until(lambda: client.get(ns + "node") is None, timeout=10.0)
    assert client.lease_keepalive_once(lease) == 0
    assert client.lease_time_to_live(lease) == -1


def test_keepalive_holds_keys_past_the_ttl(client: EtcdClient, ns: str) -> None:
    lease = client.lease_grant(2)
    client.put(ns + "node", "up", lease=lease)
    end = time.monotonic() + 4.5
    while time.monotonic() < end:
        assert client.lease_keepalive_once(lease) >= 1
        time.sleep(0.5)
    assert client.get(ns + "node") is not None
    assert client.lease_revoke(lease) is True
    assert client.get(ns + "node") is None
    assert client.lease_revoke(lease) is False


def test_grant_validates_ttl(client: EtcdClient) -> None:
    with pytest.raises(ValueError, match="ttl must be positive"):
        client.lease_grant(0)


def test_lease_keeper_keeps_and_regrants(client: EtcdClient, ns: str) -> None:
    grants: list[int] = []

    def on_grant(lease: int) -> None:
        grants.append(lease)
        client.put(ns + "node", "up", lease=lease)

    keeper = LeaseKeeper(client, ttl=2, on_grant=on_grant, interval=0.3, name="test").start()
    try:
        first = keeper.wait_granted(5.0)
        assert first and grants == [first] and client.get(ns + "node").lease == first
        time.sleep(3.0)  # longer than the TTL: only keep-alives hold the key
        assert client.get(ns + "node") is not None and keeper.healthy and keeper.lease_id == first
        # Lose the lease behind the keeper's back: it must grant a new one and call on_grant.
        client.lease_revoke(first)
        assert wait_until(lambda: len(grants) == 2, timeout=5.0)
        assert grants[1] != first and keeper.lease_id == grants[1]
        assert wait_until(lambda: client.get(ns + "node") is not None, timeout=2.0)
        assert client.get(ns + "node").lease == grants[1]
    finally:
        keeper.stop(revoke=True)
    assert client.get(ns + "node") is None
    assert keeper.lease_id == 0 and not keeper._thread.is_alive()


def test_lease_keeper_reports_unavailable_store(tmp_path) -> None:
    client = EtcdClient(f"unix://{tmp_path}/none.sock", timeout=0.5)
    keeper = LeaseKeeper(client, ttl=5, retry=0.05).start()
    try:
        assert wait_until(lambda: bool(keeper.last_error), timeout=3.0)
        assert not keeper.healthy and "does not exist" in keeper.last_error
        assert keeper.wait_granted(0.1) == 0
    finally:
        keeper.stop(revoke=False)
