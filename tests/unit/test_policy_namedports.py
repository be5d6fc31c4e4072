"""Egress named ports (issue 11 item 1): resolved against the peers' container ports, the same way by
the agent and by ``policy simulate``; and the agent's CIDR identities reach the ipcache around the
policy-map write (item 2: new prefixes before the rules, released ones after)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from membrane.agent import peer_ports
from membrane.agent.peer_ports import PeerPorts
from membrane.agent.policy_sync import PolicySync
from membrane.cli.policy_simulate import pod_infos
from membrane.datapath.fake import Faults, MemPolicyMap
from membrane.datapath.maps.policy import DIR_EGRESS, PolicySlot, Verdict
from membrane.endpoint.model import Endpoint
from membrane.endpoint.start_stats import StageTimes
from membrane.identity.allocator import encode_labels
from membrane.identity.labels import LabelSet, pod_identity_labels
from membrane.model.validate import validate_object
from membrane.policy.mapstate import PROTO_TCP, PROTO_UDP, PolicyEntry, verdict
from membrane.policy.namedports import changed_names, peer_named_ports, peer_port_numbers, pod_named_ports
from membrane.policy.repository import PolicyRepository
from membrane.policy.simulate import resolve_pods
from membrane.policy.translate import origin_of, rules_from_object
from membrane.store.kv import KV
from membrane.store.layout import StoreLayout
from membrane.store.watch import WatchEvent

NS = "k8s:io.kubernetes.pod.namespace"
CLIENT, WEB, WEB2, DB = 1000, 1001, 1002, 1003


def labels(ns: str, **kv: str) -> dict[str, str]:
    return {NS: ns, **{f"k8s:{k}": v for k, v in kv.items()}}


def pod(ns: str, name: str, app: str, ip: str, ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
            "spec": {"containers": [{"name": "c", "image": "nginx", "ports": ports or []}]},
            "status": {"phase": "Running", "podIP": ip}}


def cnp(spec: dict[str, Any], name: str = "p", ns: str = "x") -> dict[str, Any]:
    spec.setdefault("endpointSelector", {"matchLabels": {"app": "client"}})
    return validate_object({"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
                            "metadata": {"name": name, "namespace": ns}, "spec": spec}, "test")


def knp(spec: dict[str, Any], name: str = "k", ns: str = "x") -> dict[str, Any]:
    return validate_object({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                            "metadata": {"name": name, "namespace": ns}, "spec": spec}, "test")


def repo_with(*objs: dict[str, Any], table: dict | None = None) -> PolicyRepository:
    repo = PolicyRepository()
    for ident, app in ((CLIENT, "client"), (WEB, "web"), (WEB2, "web"), (DB, "db")):
        repo.upsert_identity(ident, labels("x", app=app, id=str(ident)))
    for obj in objs:
        repo.set_policy(origin_of(obj), rules_from_object(obj))
    repo.set_peer_named_ports(table or {})
    return repo


def egress_ports(repo: PolicyRepository, identity: int = CLIENT) -> set[tuple[int, int, int]]:
    return {(e.identity, e.protocol, e.port) for e in repo.resolve(identity).entries if e.direction == "egress"}


TO_WEB_HTTP = {"egress": [{"toEndpoints": [{"matchLabels": {"app": "web"}}],
                           "toPorts": [{"ports": [{"port": "http-8080"}]}]}]}


# ---- pure pieces -----------------------------------------------------------------------------------------------
def test_pod_named_ports_reads_containers_first_name_wins():
    p = pod("x", "w", "web", "10.0.1.2", [{"name": "HTTP-8080", "containerPort": 8080},
                                          {"name": "dns", "containerPort": 53, "protocol": "udp"},
                                          {"name": "http-8080", "containerPort": 9999},
                                          {"containerPort": 7000}])
    assert pod_named_ports(p) == {"http-8080": (8080, "TCP"), "dns": (53, "UDP")}
    assert pod_named_ports({}) == {}


def test_peer_table_merges_pods_of_one_identity():
    table = peer_named_ports([(WEB, {"http": (8080, "TCP")}), (WEB, {"http": (8081, "TCP")}), (DB, {}),
                              (WEB2, {"http": (9090, "TCP"), "dns": (53, "UDP")})])
    assert table == {WEB: {"http": frozenset({(8080, "TCP"), (8081, "TCP")})},
                     WEB2: {"http": frozenset({(9090, "TCP")}), "dns": frozenset({(53, "UDP")})}}
    assert peer_port_numbers(table, 0, "http") == {(8080, "TCP"), (8081, "TCP"), (9090, "TCP")}
    assert peer_port_numbers(table, DB, "http") == frozenset()
    assert changed_names(table, {**table, WEB2: {"http": frozenset({(9090, "TCP")})}}) == {"dns"}


# ---- resolution ------------------------------------------------------------------------------------------------
def test_egress_named_port_resolves_per_peer_number():
    table = peer_named_ports([(WEB, {"http-8080": (8080, "TCP")}), (WEB2, {"http-8080": (80, "TCP")}),
                              (DB, {"http-8080": (5432, "TCP")})])
    repo = repo_with(cnp(TO_WEB_HTTP), table=table)
    # each selected peer gets its own number; the unselected db's number is not used
    assert egress_ports(repo) == {(WEB, PROTO_TCP, 8080), (WEB2, PROTO_TCP, 80)}
    resolved = repo.resolve(CLIENT)
    assert verdict(resolved, WEB, PROTO_TCP, 8080, "egress") == ("allow", 0)
    assert verdict(resolved, WEB, PROTO_TCP, 80, "egress") == ("default-deny", 133)
    assert verdict(resolved, DB, PROTO_TCP, 5432, "egress") == ("default-deny", 133)


def test_one_identity_with_two_numbers_gives_two_entries_and_protocol_must_match():
    table = peer_named_ports([(WEB, {"http-8080": (8080, "TCP")}), (WEB, {"http-8080": (8081, "TCP")}),
                              (WEB2, {"http-8080": (8080, "UDP")})])
    repo = repo_with(cnp(TO_WEB_HTTP), table=table)
    assert egress_ports(repo) == {(WEB, PROTO_TCP, 8080), (WEB, PROTO_TCP, 8081), (WEB2, PROTO_UDP, 8080)}
    tcp_only = cnp({"egress": [{"toEndpoints": [{"matchLabels": {"app": "web"}}],
                                "toPorts": [{"ports": [{"port": "http-8080", "protocol": "TCP"}]}]}]})
    assert egress_ports(repo_with(tcp_only, table=table)) == {(WEB, PROTO_TCP, 8080), (WEB, PROTO_TCP, 8081)}


def test_l3_wildcard_takes_every_peers_numbers():
    table = peer_named_ports([(WEB, {"http-8080": (8080, "TCP")}), (DB, {"http-8080": (5432, "TCP")})])
    repo = repo_with(cnp({"egress": [{"toPorts": [{"ports": [{"port": "http-8080"}]}]}]}), table=table)
    assert egress_ports(repo) == {(0, PROTO_TCP, 8080), (0, PROTO_TCP, 5432)}


def test_network_policy_egress_named_port():
    table = peer_named_ports([(WEB, {"serve-80-tcp": (80, "TCP")}), (DB, {"serve-80-tcp": (81, "TCP")})])
    policy = knp({"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"],
                  "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                              "ports": [{"port": "serve-80-tcp"}]}]})
    assert egress_ports(repo_with(policy, table=table)) == {(WEB, PROTO_TCP, 80)}


def test_ingress_named_ports_still_resolve_against_the_endpoint_itself():
    policy = cnp({"endpointSelector": {"matchLabels": {"app": "web"}},
                  "ingress": [{"fromEndpoints": [{}], "toPorts": [{"ports": [{"port": "http-8080"}]}]}]})
    repo = repo_with(policy, table=peer_named_ports([(CLIENT, {"http-8080": (1, "TCP")})]))
    entries = repo.resolve(WEB, named_ports={"http-8080": (8080, "tcp")}).entries
    assert {(e.protocol, e.port) for e in entries if e.direction == "ingress"} == {(PROTO_TCP, 8080)}


def test_repository_names_the_endpoints_a_port_table_change_touches():
    repo = repo_with(cnp(TO_WEB_HTTP))
    assert egress_ports(repo) == set()  # no peer names the port yet: nothing allowed
    assert repo.set_peer_named_ports(peer_named_ports([(WEB, {"http-8080": (8080, "TCP")})])) == {CLIENT}
    assert egress_ports(repo) == {(WEB, PROTO_TCP, 8080)}
    assert repo.set_peer_named_ports(peer_named_ports([(WEB, {"http-8080": (8080, "TCP")}),
                                                       (DB, {"metrics": (9100, "TCP")})])) == set()


# ---- the agent and the simulator share one resolution ----------------------------------------------------------
LAYOUT = StoreLayout("default")
IDS_PREFIX = LAYOUT.identities_prefix
PODS = [
    pod("x", "client", "client", "10.0.0.10"),
    pod("x", "web-a", "web", "10.0.1.11", [{"name": "http-8080", "containerPort": 8080}]),
    pod("x", "web-b", "web", "10.0.2.12", [{"name": "http-8080", "containerPort": 8081}]),
    pod("y", "web-y", "web", "10.0.2.13", [{"name": "http-8080", "containerPort": 9000}]),
    pod("x", "db", "db", "10.0.1.14", [{"name": "http-8080", "containerPort": 5432}]),
]


def identity_labels(p: dict[str, Any]) -> LabelSet:
    return pod_identity_labels(p["metadata"]["labels"], p["metadata"]["namespace"], {})


IDENTITIES: dict[LabelSet, int] = {}
for _p in PODS:
    IDENTITIES.setdefault(identity_labels(_p), 300 + len(IDENTITIES))
ALLOCATED = {n: ls for ls, n in IDENTITIES.items()}


class FakeMirror:
    def __init__(self, kvs: dict[str, bytes] | None = None) -> None:
        self.kvs = {k: KV(k, v, mod_revision=1) for k, v in (kvs or {}).items()}
        self.revision = 1
        self.subscribers: list[Any] = []

    def subscribe(self, fn: Any) -> None:
        self.subscribers.append(fn)
        fn([WatchEvent("PUT", kv, kv.mod_revision) for kv in self.kvs.values()])

    def items(self) -> list[KV]:
        return list(self.kvs.values())

    def get(self, key: str) -> KV | None:
        return self.kvs.get(key)

    def put(self, key: str, value: bytes) -> None:
        self.revision += 1
        self.kvs[key] = KV(key, value, mod_revision=self.revision)
        for fn in self.subscribers:
            fn([WatchEvent("PUT", self.kvs[key], self.revision)])

    def delete(self, key: str) -> None:
        self.revision += 1
        self.kvs.pop(key, None)
        for fn in self.subscribers:
            fn([WatchEvent("DELETE", KV(key, b""), self.revision)])


class LoggedPolicyMap(MemPolicyMap):
    """The fake datapath's policy map, noting each write in the shared log as a ("policy", slots)
    step: consecutive writes are one step, holding the map's slots after them."""

    def __init__(self, log: list[tuple[str, Any]]) -> None:
        super().__init__(Faults())
        self.log = log

    def _note(self) -> None:
        if self.log and self.log[-1][0] == "policy":
            self.log.pop()
        self.log.append(("policy", dict(self.slots)))

    def write_slot(self, slot: PolicySlot, verdict: Verdict) -> None:
        super().write_slot(slot, verdict)
        self._note()

    def delete_slot(self, slot: PolicySlot) -> bool:
        found = super().delete_slot(slot)
        self._note()
        return found


@dataclass
class FakeDatapath:
    policy: LoggedPolicyMap


class FakeEndpoints:
    def __init__(self, eps: list[Endpoint]) -> None:
        self.eps = eps

    def list(self) -> list[Endpoint]:
        return list(self.eps)


class FakeNet:
    def __init__(self, log: list[tuple[str, Any]], eps: list[Endpoint]) -> None:
        self.datapath = FakeDatapath(LoggedPolicyMap(log))
        self.endpoints = FakeEndpoints(eps)
        self.stats = StageTimes()

    def set_policy_enforcement(self, container_id: str, ifname: str, ingress: bool, egress: bool) -> None:
        pass

    def policy_realized(self, container_id: str, ifname: str, identity: int) -> None:
        pass


@dataclass
class Agent:
    sync: PolicySync
    policies: FakeMirror
    pods: FakeMirror
    ipcache: FakeMirror


def agent_for(policies: list[dict[str, Any]], log: list[tuple[str, Any]] | None = None) -> Agent:
    """A PolicySync over fake mirrors with the client pod as its one local endpoint."""
    log = [] if log is None else log
    client = PODS[0]
    ep = Endpoint(1, "c1", "eth0", "ns", "x", "client", client["status"]["podIP"], "lxc1", 5, "", "",
                  identity=IDENTITIES[identity_labels(client)])
    pods = FakeMirror({f"/pods/{p['metadata']['namespace']}/{p['metadata']['name']}": json.dumps(p).encode()
                       for p in PODS})
    ipcache = FakeMirror({LAYOUT.ipcache_key(f"{p['status']['podIP']}/32"):
                          json.dumps({"identity": IDENTITIES[identity_labels(p)]}).encode() for p in PODS})
    identities = FakeMirror({f"{IDS_PREFIX}id/{n}": encode_labels(ls) for ls, n in IDENTITIES.items()})
    policy_mirror = FakeMirror({f"/policies/{i}": json.dumps(o).encode() for i, o in enumerate(policies)})
    peers = PeerPorts(pods, ipcache, LAYOUT)  # type: ignore[arg-type]
    sync = PolicySync(FakeNet(log, [ep]), [policy_mirror], identities, IDS_PREFIX,  # type: ignore[arg-type, list-item]
                      lambda: "default", "default",
                      lambda ns, name: next((p for p in PODS if p["metadata"]["name"] == name), None),
                      peer_ports=peers.table, publish_ipcache=lambda: log.append(("ipcache", dict(sync.cidr_prefixes()))))
    return Agent(sync, policy_mirror, pods, ipcache)


def agent_entries(sync: PolicySync) -> frozenset[PolicyEntry]:
    sync.sync()
    [(_identity, resolved)] = [v for k, v in sync._resolved.items() if k == 1]
    return resolved.entries


def test_agent_and_simulate_resolve_egress_named_ports_alike():
    policies = [cnp({"egress": [{"toEndpoints": [{"matchLabels": {"app": "web",
                                                                   "k8s:io.kubernetes.pod.namespace": "x"}}],
                                 "toPorts": [{"ports": [{"port": "http-8080"}]}]},
                                {"toPorts": [{"ports": [{"port": "http-8080", "protocol": "UDP"}]}]}]}),
                knp({"podSelector": {}, "policyTypes": ["Egress"],
                     "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"port": "http-8080"}]}]})]
    sync = agent_for(policies).sync
    agent = agent_entries(sync)
    infos = pod_infos(PODS, {}, ALLOCATED)
    simulated = resolve_pods(infos, [r for o in policies for r in rules_from_object(o)],
                             identities={n: ls.to_dict() for n, ls in ALLOCATED.items()})["x/client"].entries
    assert agent == simulated
    web_x = IDENTITIES[identity_labels(PODS[1])]
    assert {(e.identity, e.port) for e in agent if e.identity == web_x} == {(web_x, 8080), (web_x, 8081)}
    assert sync.repo.peer_named_ports() == peer_named_ports((p.identity, p.named_ports) for p in infos)


def test_agent_re_resolves_when_a_peer_appears_or_changes_its_ports():
    agent = agent_for([cnp(TO_WEB_HTTP)])
    before = agent_entries(agent.sync)
    new = pod("x", "web-c", "web", "10.0.3.15", [{"name": "http-8080", "containerPort": 7070}])
    agent.pods.put("/pods/x/web-c", json.dumps(new).encode())
    assert agent_entries(agent.sync) == before  # no ipcache entry yet: no identity to key it by
    agent.ipcache.put(LAYOUT.ipcache_key("10.0.3.15/32"),
                      json.dumps({"identity": IDENTITIES[identity_labels(new)]}).encode())
    after = agent_entries(agent.sync)
    assert {e.port for e in after - before} == {7070}
    new["spec"]["containers"][0]["ports"][0]["containerPort"] = 7071
    agent.pods.put("/pods/x/web-c", json.dumps(new).encode())
    assert {e.port for e in agent_entries(agent.sync) - before} == {7071}
    agent.pods.delete("/pods/x/web-c")
    assert agent_entries(agent.sync) == before


# ---- item 2: CIDR identities reach the ipcache around the policy map write --------------------------------------
DENY_ONE_WORLD = cnp({"egress": [{"toCIDR": ["0.0.0.0/0"]}], "egressDeny": [{"toCIDR": ["203.0.113.12/32"]}]},
                     name="cidr")


def test_new_cidr_identities_reach_the_ipcache_before_the_rules_and_leave_after():
    log: list[tuple[str, Any]] = []
    agent = agent_for([DENY_ONE_WORLD], log)
    sync, policies = agent.sync, agent.policies
    sync.sync()
    kinds = [k for k, _ in log]
    assert kinds.index("ipcache") < kinds.index("policy")
    published = next(v for k, v in log if k == "ipcache")
    ident = published["203.0.113.12/32"]
    slots = next(v for k, v in log if k == "policy")
    assert any(s.identity == ident and v.deny and s.direction == DIR_EGRESS for s, v in slots.items())
    log.clear()
    policies.delete("/policies/0")
    sync.sync()
    assert [k for k, _ in log] == ["policy", "ipcache"]  # the rules go first, then the prefix
    assert log[-1][1] == {} and sync.cidr_prefixes() == {}


def test_a_failed_ipcache_publish_is_retried_and_no_rule_goes_in_before_it():
    log: list[tuple[str, Any]] = []
    sync = agent_for([DENY_ONE_WORLD], log).sync
    calls = []

    def failing() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("map full")
        log.append(("ipcache", dict(sync.cidr_prefixes())))

    sync.publish_ipcache = failing
    try:
        sync.sync()
    except OSError:
        pass
    assert not any(k == "policy" for k, _ in log)
    sync.sync()
    kinds = [k for k, _ in log]
    assert kinds[0] == "ipcache" and "policy" in kinds and "203.0.113.12/32" in log[0][1]


def test_a_new_prefix_carved_out_of_an_allowed_range_gets_its_entries_before_its_ipcache_entry():
    """allow 0.0.0.0/0 in force; a second policy names 203.0.113.11/32: between the ipcache write and
    the map write the address would carry a number with no entry (a drop of allowed traffic)."""
    log: list[tuple[str, Any]] = []
    allow_world = cnp({"egress": [{"toCIDR": ["0.0.0.0/0"]}]}, name="world")
    agent = agent_for([allow_world], log)
    agent.sync.sync()
    old_slots = dict(log[-1][1])
    log.clear()
    carve = cnp({"egress": [{"toCIDR": ["203.0.113.11/32"], "toPorts": [{"ports": [{"port": "80"}]}]}]},
                name="one")
    agent.policies.put("/policies/1", json.dumps(carve).encode())
    agent.sync.sync()
    assert [k for k, _ in log][:2] == ["policy", "ipcache"]  # primed slots, then the prefix
    ident = log[1][1]["203.0.113.11/32"]
    primed = log[0][1]
    new = {s: v for s, v in primed.items() if s not in old_slots}
    assert old_slots.items() <= primed.items() and new and all(s.identity == ident for s in new)
    final = agent.sync.net.datapath.policy.slots
    assert {s: v for s, v in final.items() if s.identity == ident} == new


def test_peer_ports_decode_only_the_pods_that_changed(monkeypatch) -> None:
    # issue 16: each run used to go over every pod in the cluster; now over the pod mirror's events
    pods = FakeMirror({f"/pods/{p['metadata']['namespace']}/{p['metadata']['name']}": json.dumps(p).encode()
                       for p in PODS})
    ipcache = FakeMirror({LAYOUT.ipcache_key(f"{p['status']['podIP']}/32"):
                          json.dumps({"identity": IDENTITIES[identity_labels(p)]}).encode() for p in PODS})
    peers = PeerPorts(pods, ipcache, LAYOUT)  # type: ignore[arg-type]
    first = peers.table()
    assert first  # the web pods name http-8080
    decoded: list[str] = []
    real = peer_ports.pod_ip_and_ports

    def counting(pod: dict[str, Any]) -> Any:
        decoded.append(pod["metadata"]["name"])
        return real(pod)

    monkeypatch.setattr(peer_ports, "pod_ip_and_ports", counting)
    client = PODS[0]
    pods.put("/pods/x/client", json.dumps(client).encode())
    assert peers.table() == first and decoded == ["client"]
    decoded.clear()
    assert peers.table() == first and decoded == []  # nothing moved: nothing decoded
    pods.delete("/pods/x/web-b")
    web_b = LabelSet(identity_labels(PODS[2]))
    after = peers.table()
    assert decoded == []  # a delete decodes nothing
    assert after[IDENTITIES[web_b]]["http-8080"] == frozenset({(8080, "TCP")})  # web-b's 8081 is gone
