"""The agent's control loop from store-mirror contents to BPF map contents, on the in-memory datapath:
ipcache, load balancer and policy controllers, each with its reconciler (per-row status, retries
with backoff that do not block other rows, a full prune that repairs drift). No root, no kernel."""

from __future__ import annotations

import json
from typing import Any

import pytest

from membrane.agent.ipcache_sync import IPCacheSync, NotApplied
from membrane.agent.lb_sync import LBSync
from membrane.agent.policy_sync import PolicySync
from membrane.datapath.fake import FakeDatapath
from membrane.datapath.maps.ipcache import IpcacheEntry
from membrane.datapath.maps.lb import Frontend
from membrane.datapath.maps.policy import DIR_INGRESS, PolicySlot, Verdict
from membrane.endpoint.model import Endpoint
from membrane.endpoint.routing import NodeInfo
from membrane.endpoint.start_stats import StageTimes
from membrane.identity.allocator import encode_labels
from membrane.identity.labels import pod_identity_labels
from membrane.loadbalancer.endpointslices import endpoint_slices
from membrane.model.service import check_service
from membrane.state.reconciler import DONE, ERROR
from membrane.store.kv import KV
from membrane.store.layout import StoreLayout

LAYOUT = StoreLayout("default")
IDS_PREFIX = LAYOUT.identities_prefix
NODES = [NodeInfo("k8s-w1", "192.168.10.101", ("10.0.1.0/24",)), NodeInfo("k8s-w2", "192.168.10.102", ("10.0.2.0/24",))]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeMirror:
    """The part of membrane.store.mirror.Mirror the controllers read: the mirrored keys."""

    def __init__(self, kvs: dict[str, bytes] | None = None) -> None:
        self.revision = 1
        self.kvs = {k: KV(k, v, mod_revision=1) for k, v in (kvs or {}).items()}

    def items(self) -> list[KV]:
        return list(self.kvs.values())

    def get(self, key: str) -> KV | None:
        return self.kvs.get(key)

    def put(self, key: str, value: Any) -> None:
        self.revision += 1
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        self.kvs[key] = KV(key, raw, mod_revision=self.revision)

    def delete(self, key: str) -> None:
        self.revision += 1
        self.kvs.pop(key, None)


def ipcache_agent(pod_ips: dict[str, int]) -> tuple[IPCacheSync, FakeMirror, FakeDatapath, Clock]:
    dp, clock = FakeDatapath(), Clock()
    mirror = FakeMirror({LAYOUT.ipcache_key(f"{ip}/32"): json.dumps({"identity": n}).encode()
                         for ip, n in pod_ips.items()})
    sync = IPCacheSync(mirror, LAYOUT, "k8s-w1", lambda: NODES, lambda: dp.ipcache, clock=clock)  # type: ignore[arg-type]
    return sync, mirror, dp, clock


def identities(dp: FakeDatapath) -> dict[str, int]:
    return {prefix: e.identity for prefix, e in dp.ipcache.items()}


# ---- ipcache ------------------------------------------------------------------------------------------------------

def test_store_entries_and_nodes_reach_the_ipcache_map_and_a_change_writes_only_its_row():
    sync, mirror, dp, _clock = ipcache_agent({"10.0.1.5": 300, "10.0.2.6": 301})
    sync.sync()
    assert identities(dp) == {"10.0.1.5/32": 300, "10.0.2.6/32": 301, "192.168.10.101/32": 1,
                              "192.168.10.102/32": 6, "0.0.0.0/0": 2}
    before = dp.faults.writes["mb_ipcache"]
    mirror.put(LAYOUT.ipcache_key("10.0.2.7/32"), {"identity": 302})
    sync.sync()
    assert identities(dp)["10.0.2.7/32"] == 302
    assert dp.faults.writes["mb_ipcache"] == before + 1  # incremental: one row, one write
    mirror.delete(LAYOUT.ipcache_key("10.0.1.5/32"))
    sync.sync()
    assert "10.0.1.5/32" not in identities(dp) and dp.faults.writes["mb_ipcache"] == before + 2


def test_a_failing_row_shows_error_the_others_are_applied_and_it_converges_once_the_fault_clears():
    sync, mirror, dp, clock = ipcache_agent({"10.0.1.5": 300})
    sync.sync()
    dp.faults.fail("mb_ipcache", "10.0.2.9/32")
    mirror.put(LAYOUT.ipcache_key("10.0.2.9/32"), {"identity": 310})
    mirror.put(LAYOUT.ipcache_key("10.0.2.8/32"), {"identity": 311})
    sync.sync()
    rec = sync.reconciler
    status = rec.status("10.0.2.9/32")
    assert status is not None and status.state == ERROR and "injected fault" in status.message
    assert rec.status("10.0.2.8/32").state == DONE  # type: ignore[union-attr]
    assert identities(dp)["10.0.2.8/32"] == 311 and "10.0.2.9/32" not in identities(dp)
    health = rec.health().to_dict()
    assert (health["errors"], health["healthy"]) == (1, False) and "10.0.2.9/32" in health["last-error"]
    sync.sync()  # before its backoff: not tried again
    assert rec.status("10.0.2.9/32").attempts == 1  # type: ignore[union-attr]
    clock.now += 1
    sync.reconciler.run_once()  # tried again, fails again: the backoff grows
    assert rec.status("10.0.2.9/32").attempts == 2  # type: ignore[union-attr]
    dp.faults.clear()
    clock.now += 10
    assert sync.reconciler.run_once()
    assert identities(dp)["10.0.2.9/32"] == 310 and rec.status("10.0.2.9/32").state == DONE  # type: ignore[union-attr]
    assert rec.health().to_dict()["errors"] == 0


def test_publish_fails_while_a_cidr_prefix_is_not_in_the_map():
    dp, clock = FakeDatapath(), Clock()
    cidrs = {"203.0.113.0/24": 16777217}
    sync = IPCacheSync(FakeMirror(), LAYOUT, "k8s-w1", lambda: NODES, lambda: dp.ipcache,  # type: ignore[arg-type]
                       lambda: cidrs, clock=clock)
    dp.faults.fail("mb_ipcache", "203.0.113.0/24")
    with pytest.raises(NotApplied, match="1 CIDR prefix"):
        sync.publish()
    assert identities(dp)["192.168.10.101/32"] == 1  # the rest is in
    dp.faults.clear()
    clock.now += 1
    sync.publish()
    assert identities(dp)["203.0.113.0/24"] == 16777217


def test_the_full_prune_repairs_drift_other_writers_left():
    sync, _mirror, dp, clock = ipcache_agent({"10.0.1.5": 300})
    sync.sync()
    dp.ipcache.update("10.9.9.9/32", IpcacheEntry(999))  # a stray entry
    dp.ipcache.update("10.0.1.5/32", IpcacheEntry(444))  # a changed one
    sync.sync()
    assert identities(dp)["10.9.9.9/32"] == 999  # nothing changed in the table: no write
    clock.now += 61
    sync.reconciler.run_once()
    assert "10.9.9.9/32" not in identities(dp) and identities(dp)["10.0.1.5/32"] == 300
    assert sync.reconciler.health().last_prune is not None


def test_no_datapath_yet_leaves_rows_pending_with_the_reason():
    mirror = FakeMirror({LAYOUT.ipcache_key("10.0.1.5/32"): b'{"identity": 300}'})
    sync = IPCacheSync(mirror, LAYOUT, "k8s-w1", lambda: NODES, lambda: None, clock=Clock())  # type: ignore[arg-type]
    sync.sync()
    st = sync.reconciler.status("10.0.1.5/32")
    assert st is not None and st.state == ERROR and "not loaded" in st.message


# ---- load balancer ------------------------------------------------------------------------------------------------

NODE_OBJS = [{"metadata": {"name": n.name}, "status": {"addresses": [{"type": "InternalIP", "address": n.internal_ip}]}}
             for n in NODES]


def service(name: str, cluster_ip: str) -> dict[str, Any]:
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
           "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
                    "clusterIP": cluster_ip}}
    check_service(obj)
    return obj


def backend_pod(app: str, name: str, ip: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
            "spec": {"nodeName": "k8s-w1", "containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}}


def lb_agent() -> tuple[LBSync, FakeMirror, FakeMirror, FakeDatapath]:
    dp = FakeDatapath()
    services, slices = FakeMirror(), FakeMirror()
    for name, ip, pods in (("web", "10.96.0.20", [backend_pod("web", "w1", "10.0.1.5"), backend_pod("web", "w2", "10.0.2.6")]),
                           ("db", "10.96.0.30", [backend_pod("db", "d1", "10.0.1.7")])):
        svc = service(name, ip)
        services.put(f"/svc/{name}", svc)
        for i, sl in enumerate(endpoint_slices(svc, pods)):
            slices.put(f"/slices/{name}/{i}", sl)
    sync = LBSync("k8s-w1", services, slices, FakeMirror({f"/n/{o['metadata']['name']}": json.dumps(o).encode()  # type: ignore[arg-type]
                                                          for o in NODE_OBJS}),
                  FakeMirror(), lambda: dp.lb, lambda: "random", lambda: 251, clock=Clock())  # type: ignore[arg-type]
    return sync, services, slices, dp


def test_services_reach_the_lb_maps_and_a_deleted_one_leaves_with_its_backends():
    sync, services, slices, dp = lb_agent()
    sync.sync()
    rows = {(r.service, r.backend) for r in dp.lb.services() if r.slot}
    assert rows == {("10.96.0.20:80/TCP", "10.0.1.5:8080/TCP"), ("10.96.0.20:80/TCP", "10.0.2.6:8080/TCP"),
                    ("10.96.0.30:80/TCP", "10.0.1.7:8080/TCP")}
    services.delete("/svc/db")
    slices.delete("/slices/db/0")
    sync.sync()
    assert {r.service for r in dp.lb.services()} == {"10.96.0.20:80/TCP"}
    assert {b.address for b in dp.lb.backends().values()} == {"10.0.1.5", "10.0.2.6"}
    assert sync.reconciler.health().to_dict()["rows"] == 1


def test_one_service_failing_does_not_keep_the_others_out():
    sync, _services, _slices, dp = lb_agent()
    web = Frontend("10.96.0.20", 80)
    dp.faults.fail("mb_lb_svc", bytes(web.key(0)))
    sync.sync()
    assert {r.service for r in dp.lb.services() if r.slot == 0} == {"10.96.0.30:80/TCP"}
    assert sync.reconciler.status(web).state == ERROR  # type: ignore[union-attr]
    dp.faults.clear()
    sync.reconciler._clock.now += 1  # type: ignore[attr-defined]
    sync.sync()
    assert {r.service for r in dp.lb.services() if r.slot == 0} == {"10.96.0.20:80/TCP", "10.96.0.30:80/TCP"}


# ---- policy -------------------------------------------------------------------------------------------------------

class Net:
    """What PolicySync uses of NodeNetwork: the datapath, the endpoints and their enforcement flags."""

    def __init__(self, dp: FakeDatapath, eps: list[Endpoint]) -> None:
        self.datapath = dp
        self.eps = eps
        self.flags: dict[str, tuple[bool, bool]] = {}
        self.stats = StageTimes()  # where the policy computation's time goes
        self.realized: list[tuple[str, int]] = []  # (container id, identity) whose policy is in place

    def policy_realized(self, container_id: str, _ifname: str, identity: int) -> None:
        self.realized.append((container_id, identity))

    @property
    def endpoints(self) -> Net:
        return self

    def list(self) -> list[Endpoint]:
        return list(self.eps)

    def set_policy_enforcement(self, container_id: str, ifname: str, ingress: bool, egress: bool) -> None:
        self.flags[container_id] = (ingress, egress)
        for ep in self.eps:
            if ep.container_id == container_id:
                ep.policy_ingress, ep.policy_egress = ingress, egress


WEB_LABELS = pod_identity_labels({"app": "web"}, "default", {})
CLIENT_LABELS = pod_identity_labels({"app": "client"}, "default", {})
ALLOW_CLIENT = {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
                "metadata": {"name": "allow", "namespace": "default"},
                "spec": {"endpointSelector": {"matchLabels": {"app": "web"}},
                         "ingress": [{"fromEndpoints": [{"matchLabels": {"app": "client"}}],
                                      "toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}]}]}]}}


def policy_agent() -> tuple[PolicySync, FakeMirror, Net, Clock]:
    dp, clock = FakeDatapath(), Clock()
    web = Endpoint(7, "c7", "eth0", "ns", "default", "web", "10.0.1.5", "lxc7", 5, "", "", identity=300)
    net = Net(dp, [web])
    ids = FakeMirror({f"{IDS_PREFIX}id/300": encode_labels(WEB_LABELS), f"{IDS_PREFIX}id/301": encode_labels(CLIENT_LABELS)})
    policies = FakeMirror()
    sync = PolicySync(net, [policies], ids, IDS_PREFIX, lambda: "default", "default",  # type: ignore[arg-type, list-item]
                      lambda ns, name: None, clock=clock)
    return sync, policies, net, clock


def test_a_policy_reaches_the_map_and_enforcement_follows_its_entries():
    sync, policies, net, _clock = policy_agent()
    sync.sync()
    assert net.datapath.policy.slots == {} and net.flags["c7"] == (False, False)
    policies.put("/cnp/allow", ALLOW_CLIENT)
    sync.sync()
    assert net.datapath.policy.slots == {PolicySlot(7, DIR_INGRESS, 301, 6, 80, 16): Verdict(),
                                         PolicySlot(7, DIR_INGRESS, 1, 0, 0, 0): Verdict()}
    assert net.flags["c7"] == (True, False)
    policies.delete("/cnp/allow")
    sync.sync()
    assert net.datapath.policy.slots == {} and net.flags["c7"] == (False, False)


def test_enforcement_waits_for_a_failed_slot_and_switches_on_once_it_is_in():
    sync, policies, net, clock = policy_agent()
    sync.sync()
    allow = PolicySlot(7, DIR_INGRESS, 301, 6, 80, 16)
    net.datapath.faults.fail("mb_policy", allow)
    policies.put("/cnp/allow", ALLOW_CLIENT)
    net.realized.clear()
    with pytest.raises(NotApplied, match="1 slot"):
        sync.sync()
    assert net.flags["c7"] == (False, False)  # the client would be refused: do not enforce yet
    assert ("c7", 300) not in net.realized  # an ADD waiting for its policy keeps waiting
    assert PolicySlot(7, DIR_INGRESS, 1, 0, 0, 0) in net.datapath.policy.slots  # the other row is in
    assert sync.reconciler.status(allow).state == ERROR  # type: ignore[union-attr]
    net.datapath.faults.clear()
    clock.now += 1
    sync.sync()  # nothing changed in the store: the endpoint left behind is applied again
    assert allow in net.datapath.policy.slots and net.flags["c7"] == (True, False)
    assert net.realized == [("c7", 300)]  # a waiting ADD returns only now
    assert sync.reconciler.health().healthy


def test_a_slot_that_replaces_another_goes_in_before_the_old_one_goes():
    sync, policies, net, clock = policy_agent()
    policies.put("/cnp/allow", ALLOW_CLIENT)
    sync.sync()
    widened = json.loads(json.dumps(ALLOW_CLIENT))
    widened["spec"]["ingress"][0]["toPorts"][0]["ports"][0] = {"port": "80", "endPort": 81, "protocol": "TCP"}
    old, new = PolicySlot(7, DIR_INGRESS, 301, 6, 80, 16), PolicySlot(7, DIR_INGRESS, 301, 6, 80, 15)
    net.datapath.faults.fail("mb_policy", new)
    policies.put("/cnp/allow", widened)
    with pytest.raises(NotApplied):
        sync.sync()
    assert old in net.datapath.policy.slots and new not in net.datapath.policy.slots  # port 80 stays allowed
    net.datapath.faults.clear()
    clock.now += 1
    sync.sync()
    assert new in net.datapath.policy.slots and old not in net.datapath.policy.slots
