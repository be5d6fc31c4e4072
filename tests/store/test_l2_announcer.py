"""The agent's L2 announcer against a real etcd, two nodes competing (the ARP responder replaced by a
recorder, so no root is needed): one node wins a Service, answers for its address and sends gratuitous
ARP; a clean stop hands the Service to the other; a Service no longer selected is released."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from membrane.agent.l2_announcer import L2Announcer
from membrane.model.config import ClusterConfig
from membrane.model.validate import validate_object
from membrane.store.etcd import EtcdClient
from membrane.store.mirror import Mirror
from membrane.store.resources import ResourceStore
from tests.etcd_fixture import etcd_server  # noqa: F401  (fixture)


class Recorder:
    """Stands in for ARPResponder: remembers what it was told."""

    def __init__(self) -> None:
        self.answering: set[tuple[str, str]] = set()
        self.garps: list[tuple[str, str]] = []

    def set_entries(self, wanted: set[tuple[str, str]], valid_until: float = 0) -> None:
        self.answering = set(wanted)

    def gratuitous(self, ip: str, device: str) -> None:
        self.garps.append((ip, device))

    def entries(self) -> list[Any]:
        return []

    def close(self) -> None:
        pass


def _objects(store: ResourceStore, *objs: dict[str, Any]) -> None:
    store.apply_many([validate_object(o, "test", allow_read_only=True) for o in objs])


def test_one_node_announces_and_hands_over(client: EtcdClient) -> None:
    cluster = f"c{uuid.uuid4().hex[:8]}"
    prefix = f"/membrane/{cluster}"
    store = ResourceStore(client, cluster)
    cfg = ClusterConfig(l2_announcements_enabled=True, l2_announcements_lease_duration="3s",
                        l2_announcements_renew_deadline="1s", l2_announcements_retry_period="200ms")
    _objects(store,
             {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "w1"}},
             {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "w2"}},
             {"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumL2AnnouncementPolicy", "metadata": {"name": "p"},
              "spec": {"loadBalancerIPs": True, "interfaces": ["^eth1$"],
                       "serviceSelector": {"matchLabels": {"color": "blue"}}}},
             {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"color": "blue"}},
              "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
              "status": {"loadBalancer": {"ingress": [{"ip": "192.168.10.240"}]}}})
    mirrors = [Mirror(client, f"{prefix}/resources/core/Service/"), Mirror(client, f"{prefix}/resources/core/Node/")]
    for m in mirrors:
        m.start()
        m.wait_synced(5)
    recorders = {n: Recorder() for n in ("w1", "w2")}
    nodes = {n: L2Announcer(n, client, store.layout, prefix, cfg, mirrors[0], mirrors[1], ["eth1", "lxc1"],
                            responder=lambda n=n: recorders[n]) for n in ("w1", "w2")}  # type: ignore[misc]
    try:
        for a in nodes.values():
            a.start(lambda: None)
            a.policies.wait_synced(5)
            assert a.keeper.wait_granted(5)

        def settle() -> None:
            for _ in range(3):
                for a in nodes.values():
                    a.sync()

        settle()
        holders = [n for n, r in recorders.items() if r.answering]
        assert len(holders) == 1, {n: r.answering for n, r in recorders.items()}
        first = holders[0]
        second = "w2" if first == "w1" else "w1"
        assert recorders[first].answering == {("192.168.10.240", "eth1")}  # eth1 only, not lxc1
        assert recorders[first].garps == [("192.168.10.240", "eth1")]
        lease = store.get("coordination.k8s.io", "Lease", "kube-system", "cilium-l2announce-default-web")
        assert lease is not None and lease["spec"]["holderIdentity"] == first

        nodes[first].stop()  # clean stop: released at once
        nodes[second].sync()
        assert recorders[second].answering == {("192.168.10.240", "eth1")}
        assert recorders[second].garps == [("192.168.10.240", "eth1")]

        svc = store.get("core", "Service", "default", "web")
        assert svc is not None
        svc["metadata"]["labels"] = {"color": "red"}  # no longer selected: released
        store.put_object(svc)
        deadline = time.monotonic() + 5
        while json.loads(mirrors[0].items()[0].value)["metadata"]["labels"].get("color") != "red":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        nodes[second].sync()
        assert recorders[second].answering == set()
        assert store.get("coordination.k8s.io", "Lease", "kube-system", "cilium-l2announce-default-web") is None
    finally:
        for a in nodes.values():
            a.stop()
        for m in mirrors:
            m.stop()
