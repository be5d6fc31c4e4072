"""`membrane policy simulate`: pods and identities from a fake store, the table of changed pairs."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from membrane.cli import target
from membrane.cli.main import main
from membrane.cli.policy_simulate import UNALLOCATED_BASE, entity_map, pod_infos, pod_key, render_changes
from membrane.identity.allocator import encode_labels
from membrane.identity.labels import pod_identity_labels
from membrane.model.validate import validate_object
from membrane.policy.simulate import Change, Outcome, Probe


def pod(ns: str, name: str, labels: dict, ip: str | None = "10.0.0.1", ports: list | None = None,
        phase: str = "Running", host_network: bool = False) -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "nginx", "ports": ports or []}]}
    if host_network:
        spec["hostNetwork"] = True
    status: dict = {"phase": phase}
    if ip:
        status["podIP"] = ip
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": spec, "status": status}


PODS = [
    pod("x", "web", {"app": "web"}, "10.0.1.2", [{"name": "http", "containerPort": 8080}]),
    pod("x", "client", {"app": "client"}, "10.0.2.2"),
    pod("y", "other", {"app": "client"}, "10.0.2.3"),
    pod("x", "pending", {"app": "client"}, None, phase="Pending"),
    pod("x", "done", {"app": "client"}, "10.0.2.9", phase="Succeeded"),
    pod("kube-system", "hostnet", {"app": "h"}, "192.168.10.100", host_network=True),
]
NS_LABELS = {"x": {"team": "a"}, "y": {}}


def identity_of(ns: str, labels: dict) -> object:
    return pod_identity_labels(labels, ns, NS_LABELS.get(ns, {}))


ALLOCATED = {300: identity_of("x", {"app": "web"}), 301: identity_of("x", {"app": "client"})}


def test_pod_infos_keep_running_pods_with_identities_and_named_ports():
    infos = pod_infos(PODS, NS_LABELS, ALLOCATED)
    assert [(p.key, p.identity, p.ip) for p in infos] == [
        ("x/client", 301, "10.0.2.2"), ("x/web", 300, "10.0.1.2"), ("y/other", UNALLOCATED_BASE, "10.0.2.3")]
    web = infos[1]
    assert web.named_ports == {"http": (8080, "TCP")}
    assert web.labels["k8s:app"] == "web"
    assert web.labels["k8s:io.cilium.k8s.namespace.labels.team"] == "a"
    assert web.labels["k8s:io.kubernetes.pod.namespace"] == "x"


def test_unallocated_pods_with_equal_labels_share_a_stand_in():
    pods = [pod("y", "a", {"app": "q"}), pod("y", "b", {"app": "q"}), pod("y", "c", {"app": "r"})]
    assert [p.identity for p in pod_infos(pods, {}, {})] == [UNALLOCATED_BASE, UNALLOCATED_BASE, UNALLOCATED_BASE + 1]


def test_entity_map_covers_reserved_and_cluster_identities():
    entities = entity_map(ALLOCATED)
    assert 1 in entities["host"] and 2 in entities["world"]
    assert {300, 301} <= entities["cluster"]
    assert "all" not in entities and "none" not in entities


def test_pod_key_defaults_the_namespace():
    assert pod_key("web") == "default/web"
    assert pod_key("x/web") == "x/web"
    assert pod_key(None) is None


def test_render_changes():
    assert render_changes([]) == "no reachability changes"
    change = Change("x/client", "x/web", Probe("TCP", 80), Outcome("allow"), Outcome("default-deny", 133, "ingress"))
    assert render_changes([change]).splitlines() == [
        "SOURCE     DESTINATION   PORT     BEFORE   AFTER",
        "x/client   x/web         80/TCP   allow    default-deny (ingress, 133)",
    ]


# ---- the command over a fake store ---------------------------------------------------------------------
@dataclass
class KV:
    key: str
    value: bytes
    mod_revision: int = 1


class FakeClient:
    def __init__(self, identities: dict) -> None:
        self.kvs = [KV(f"/ids/id/{n}", encode_labels(labels)) for n, labels in identities.items()]

    def get(self, key: str):  # no cluster settings stored: the default enforcement mode
        return None

    def get_prefix(self, prefix: str):
        return [kv for kv in self.kvs if kv.key.startswith(prefix)], 9


class FakeLayout:
    identities_prefix = "/ids/"


class FakeStore:
    def __init__(self, objs: dict[str, list[dict]]) -> None:
        self.objs = objs
        self.client = FakeClient(ALLOCATED)
        self.layout = FakeLayout()

    def list(self, group, kind, namespace=None):
        return [o for o in self.objs.get(kind, []) if namespace is None or o["metadata"].get("namespace") == namespace], 9

    def apply_many(self, objs):  # pragma: no cover - must never be called
        raise AssertionError("simulate must not write to the store")


CURRENT = validate_object({"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
                           "metadata": {"name": "web", "namespace": "x"},
                           "spec": {"endpointSelector": {"matchLabels": {"app": "web"}},
                                    "ingress": [{"fromEndpoints": [{"matchLabels": {"app": "client"}}]}]}}, "t")
CANDIDATE = textwrap.dedent("""\
    apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: web, namespace: x}
    spec:
      endpointSelector: {matchLabels: {app: web}}
      ingress:
      - fromEndpoints: [{matchLabels: {app: client}}]
        toPorts: [{ports: [{port: http, protocol: TCP}]}]
    """)


@pytest.fixture
def fake_lab(monkeypatch):
    store = FakeStore({"Pod": PODS, "CiliumNetworkPolicy": [CURRENT],
                       "Namespace": [{"metadata": {"name": ns, "labels": labels}} for ns, labels in NS_LABELS.items()]})
    monkeypatch.setattr(target, "cluster_store", lambda lab: store)
    monkeypatch.setattr(target, "target", lambda lab: target.Target("unix:///nowhere", "default"))
    return store


def test_simulate_command_prints_the_pairs_that_change(fake_lab, tmp_path: Path, capsys):
    path = tmp_path / "new.yaml"
    path.write_text(CANDIDATE)
    assert main(["policy", "simulate", "-f", str(path), "--port", "80", "--port", "8080/tcp"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "SOURCE     DESTINATION   PORT     BEFORE   AFTER",
        "x/client   x/web         80/TCP   allow    default-deny (ingress, 133)",
    ]
    # the current policy already lets only x/client in; y/other stays denied, on 8080 nothing changes
    assert main(["policy", "simulate", "-f", str(path), "--port", "8080", "--to", "x/web"]) == 0
    assert capsys.readouterr().out == "no reachability changes\n"


def test_simulate_command_errors(fake_lab, tmp_path: Path, capsys):
    path = tmp_path / "new.yaml"
    path.write_text(CANDIDATE)
    assert main(["policy", "simulate", "-f", str(path), "--from", "x/nope"]) == 1
    assert "pod x/nope not found or not running" in capsys.readouterr().err
    assert main(["policy", "simulate", "-f", str(path), "--port", "http"]) == 1
    assert "invalid probe" in capsys.readouterr().err
    pod_only = tmp_path / "pod.yaml"
    pod_only.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: nginx}]}\n")
    assert main(["policy", "simulate", "-f", str(pod_only)]) == 1
    assert "no policies found" in capsys.readouterr().err
