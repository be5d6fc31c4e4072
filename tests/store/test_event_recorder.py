"""The daemons' event recorder against a real etcd: queued events are written together, aggregated."""

from __future__ import annotations

import time
import uuid

import pytest

from membrane.store.etcd import EtcdClient
from membrane.store.events import EventRecorder
from membrane.store.resources import ResourceStore
from tests.etcd_fixture import EtcdServer, etcd_server  # noqa: F401  (fixture)


@pytest.fixture
def store(etcd_server: EtcdServer) -> ResourceStore:  # noqa: F811
    return ResourceStore(EtcdClient(etcd_server.endpoint), f"c{uuid.uuid4().hex[:8]}")


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "uid": f"u-{name}"}}


def events(store: ResourceStore) -> dict[str, dict]:
    return {e["involvedObject"]["name"]: e for e in store.list("core", "Event", "default")[0]}


def test_a_batch_is_one_transaction_and_a_repeated_event_is_counted(store: ResourceStore) -> None:
    recorder = EventRecorder(store, "kubelet")
    items = [(pod(f"p{i}"), "Normal", "Scheduled", f"assigned p{i}", "default-scheduler", "") for i in range(5)]
    items.append(items[0])  # the same event twice in one batch: written after the first, count 2
    recorder._write_batch(items)
    got = events(store)
    assert sorted(got) == [f"p{i}" for i in range(5)]
    assert got["p0"]["count"] == 2 and all(got[f"p{i}"]["count"] == 1 for i in range(1, 5))
    revisions = {got[f"p{i}"]["metadata"]["resourceVersion"] for i in range(1, 5)}
    assert len(revisions) == 1  # written by one transaction
    assert got["p0"]["metadata"]["resourceVersion"] not in revisions  # p0's second write came after it


def test_an_event_stored_meanwhile_is_aggregated_not_lost(store: ResourceStore) -> None:
    recorder = EventRecorder(store, "kubelet")
    item = (pod("web"), "Warning", "BackOff", "Back-off restarting failed container", "kubelet", "k8s-w1")
    recorder._write_batch([item])
    recorder._write_batch([item, (pod("db"), "Normal", "Pulled", "pulled", "kubelet", "k8s-w1")])
    got = events(store)
    assert got["web"]["count"] == 2 and got["db"]["count"] == 1
    assert got["web"]["metadata"]["uid"]  # created by the store, kept on the aggregation


def test_recorded_events_reach_the_store(store: ResourceStore) -> None:
    recorder = EventRecorder(store, "kubelet")
    for i in range(20):
        recorder.record(pod(f"q{i}"), "Normal", "Scheduled", f"assigned q{i}", "default-scheduler")
    deadline = time.monotonic() + 10
    while len(events(store)) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(events(store)) == 20
