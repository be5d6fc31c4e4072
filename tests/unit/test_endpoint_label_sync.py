"""sync-endpoint-labels looks only at the endpoints of pods that changed (issue 16), and still at every
endpoint on its first run, every 30 s and after a failed run."""

from __future__ import annotations

import pytest

from membrane.agent.endpoint_labels import FULL_PASS_SECONDS, EndpointLabelSync, pod_of_key
from membrane.agent.node_network import NodeNetwork
from membrane.endpoint.model import Endpoint
from membrane.ipam.host_scope import HostScopeAllocator
from membrane.store.kv import KV
from membrane.store.watch import WatchEvent


def _ep(n: int) -> Endpoint:
    return Endpoint(id=n, container_id=f"c{n}", ifname="eth0", netns=f"/run/netns/p{n}", namespace="default",
                    pod_name=f"p{n}", ipv4=f"10.0.0.{n + 1}", host_ifname=f"lxc{n}", host_ifindex=100 + n,
                    host_mac="aa:bb:cc:dd:ee:01", pod_mac="aa:bb:cc:dd:ee:02", labels={"app": "a"})


def _event(pod: str, namespace: str = "default") -> WatchEvent:
    return WatchEvent("PUT", KV(f"/membrane/default/resources/core/Pod/{namespace}/{pod}", b"{}"), 1)


class Labels:
    """The pods' labels as the mirror has them; records which pods were looked up."""

    def __init__(self) -> None:
        self.labels: dict[tuple[str, str], dict[str, str]] = {}
        self.asked: list[str] = []
        self.fail = False

    def __call__(self, namespace: str, pod: str) -> dict[str, str]:
        if self.fail:
            raise RuntimeError("pod lookup failed")
        self.asked.append(pod)
        return self.labels.get((namespace, pod), {"app": "a"})


@pytest.fixture
def net(tmp_path):
    net = NodeNetwork(str(tmp_path / "state.json"), str(tmp_path / "pins"))
    net.allocator = HostScopeAllocator("10.0.0.0/24")
    with net.lock:
        for n in range(1, 41):
            net.endpoints.put(_ep(n))
    yield net
    net.close()


def test_pod_of_key() -> None:
    assert pod_of_key("/membrane/default/resources/core/Pod/kube-system/coredns-1") == ("kube-system", "coredns-1")


def test_only_the_changed_pods_endpoints_are_looked_at(net: NodeNetwork) -> None:
    now = [100.0]
    labels = Labels()
    sync = EndpointLabelSync(net, labels, clock=lambda: now[0])
    sync.sync()  # the first run: every endpoint
    assert len(labels.asked) == 40
    labels.asked.clear()
    labels.labels[("default", "p7")] = {"app": "b"}
    sync.pods_changed([_event("p7"), _event("elsewhere"), _event("p7", namespace="other")])
    sync.sync()
    assert labels.asked == ["p7"]  # the pod of another node and the same name elsewhere: no endpoint here
    assert net.endpoints.get("c7", "eth0").labels == {"app": "b"}
    labels.asked.clear()
    sync.sync()  # nothing changed since
    assert labels.asked == []
    with net.lock:  # an endpoint added since the last run is looked at too (relabelled during its ADD)
        net.endpoints.put(_ep(41))
    sync.sync()
    assert labels.asked == ["p41"]
    labels.asked.clear()
    now[0] += FULL_PASS_SECONDS
    sync.sync()  # the periodic full pass
    assert len(labels.asked) == 41


def test_a_failed_run_makes_the_next_one_full(net: NodeNetwork) -> None:
    labels = Labels()
    sync = EndpointLabelSync(net, labels, clock=lambda: 0.0)
    sync.sync()
    labels.asked.clear()
    labels.fail = True
    sync.pods_changed([_event("p3")])
    with pytest.raises(RuntimeError, match="pod lookup failed"):
        sync.sync()
    labels.fail = False
    sync.sync()
    assert len(labels.asked) == 40
