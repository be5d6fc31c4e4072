"""`membrane policy validate` and `membrane policy get` without a lab: files in, text out."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from membrane.cli import target
from membrane.cli.main import main
from membrane.cli.policy_cmds import (
    apply_warnings,
    cilium_selector,
    policy_rules_json,
    render_policy_get,
    validate_documents,
)
from membrane.cli.policy_store import stored_policies
from membrane.model.validate import validate_object
from membrane.policy.unenforced import L7_RULES

FIXTURES = Path(__file__).parent / "fixtures" / "model"

GOOD = textwrap.dedent("""\
    apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: allow-web, namespace: shop}
    spec:
      endpointSelector: {matchLabels: {app: web}}
      ingress:
      - fromEndpoints: [{matchLabels: {app: client}}]
        toPorts: [{ports: [{port: "80", protocol: TCP}]}]
      - fromEntities: [host]
    """)
BAD_PORT = textwrap.dedent("""\
    apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: bad}
    spec:
      endpointSelector: {}
      ingress:
      - toPorts: [{ports: [{port: "99999"}]}]
    """)
L7 = textwrap.dedent("""\
    apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: l7}
    spec:
      endpointSelector: {matchLabels: {app: api}}
      egress:
      - toFQDNs: [{matchName: example.com}]
      - toPorts:
        - ports: [{port: "80", protocol: TCP}]
          rules: {l7proto: r2d2, l7: [{cmd: READ}]}
    """)
HTTP_L7 = L7.replace("{l7proto: r2d2, l7: [{cmd: READ}]}", "{http: [{method: GET, path: /}]}")
KAFKA_L7 = L7.replace("{l7proto: r2d2, l7: [{cmd: READ}]}", "{kafka: [{topic: empire-announce}]}")


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def cnp(name: str, spec: dict, ns: str = "default", kind: str = "CiliumNetworkPolicy") -> dict:
    meta = {"name": name} if kind == "CiliumClusterwideNetworkPolicy" else {"name": name, "namespace": ns}
    return validate_object({"apiVersion": "cilium.io/v2", "kind": kind, "metadata": meta, "spec": spec}, "test")


# ---- validate ------------------------------------------------------------------------------------------
def test_validate_prints_each_policy_with_its_rule_count(tmp_path, capsys):
    assert main(["policy", "validate", "-f", write(tmp_path, "p.yaml", GOOD)]) == 0
    out, err = capsys.readouterr()
    assert out == "valid: CiliumNetworkPolicy/allow-web (2 rules)\n"
    assert err == ""


def test_validate_reports_every_error_precisely_and_fails(tmp_path, capsys):
    path = write(tmp_path, "p.yaml", BAD_PORT + "---\n" + GOOD)
    assert main(["policy", "validate", "-f", path]) == 1
    out, err = capsys.readouterr()
    assert out == "valid: CiliumNetworkPolicy/allow-web (2 rules)\n"
    assert err == (f"error: {path}:doc 1: spec.ingress[0].toPorts[0].ports[0].port: Invalid value: \"99999\": "
                   "must be between 0 and 65535, inclusive\n")


def test_validate_notes_l7_and_unsupported_peers():
    out, errors = validate_documents([("l7.yaml", yaml.safe_load(L7))])
    assert errors == []
    assert out == ["valid: CiliumNetworkPolicy/l7 (2 rules)", f"  note: spec.egress[1].toPorts[0].rules: {L7_RULES}"]


@pytest.mark.parametrize("text", [HTTP_L7, KAFKA_L7])
def test_validate_no_longer_notes_http_kafka_rules_or_tofqdns(text):
    out, errors = validate_documents([("l7.yaml", yaml.safe_load(text))])
    assert errors == []
    assert out == ["valid: CiliumNetworkPolicy/l7 (2 rules)"]


def test_apply_warns_once_per_unenforced_field_and_never_for_enforced_policies():
    l7 = validate_object(yaml.safe_load(L7), "test")
    good = validate_object(yaml.safe_load(GOOD), "test")
    assert apply_warnings([good]) == []
    assert apply_warnings([good, l7]) == [
        f"Warning: CiliumNetworkPolicy/default/l7: spec.egress[1].toPorts[0].rules: {L7_RULES}"]


def test_apply_prints_warnings_on_stderr_and_still_succeeds(tmp_path, capsys, monkeypatch):
    stored = []

    class Store:
        def list(self, group, kind, namespace=None):
            return [{"metadata": {"name": "default"}}], 1

        def apply_many(self, objs, check_update=None):
            stored.extend(objs)
            return [(o, "created") for o in objs]

    monkeypatch.setattr(target, "cluster_store", lambda lab: Store())
    assert main(["apply", "-f", write(tmp_path, "l7.yaml", L7)]) == 0
    out, err = capsys.readouterr()
    assert out == "ciliumnetworkpolicy.cilium.io/l7 created\n"
    assert err.splitlines() == [f"Warning: CiliumNetworkPolicy/default/l7: spec.egress[1].toPorts[0].rules: {L7_RULES}"]
    assert [o["metadata"]["name"] for o in stored] == ["l7"]


def test_validate_a_directory_of_fixtures_and_non_policies(capsys):
    assert main(["policy", "validate", "-f", str(FIXTURES)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "valid: CiliumClusterwideNetworkPolicy/host-fw (2 rules)" in out
    assert "valid: NetworkPolicy/test-network-policy (2 rules)" in out
    assert "valid: Pod/xwing (not a policy)" in out


def test_validate_missing_path_and_bad_yaml(tmp_path, capsys):
    assert main(["policy", "validate", "-f", str(tmp_path / "nope.yaml")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["policy", "validate", "-f", write(tmp_path, "bad.yaml", "a: [")]) == 1
    assert "invalid YAML" in capsys.readouterr().err
    assert main(["policy", "validate", "-f", write(tmp_path, "empty.yaml", "")]) == 1
    assert "no objects found" in capsys.readouterr().err


def test_validate_never_touches_a_store(tmp_path, monkeypatch):
    def boom(lab):
        raise AssertionError("validate must not open the store")

    monkeypatch.setattr(target, "cluster_store", boom)
    assert main(["policy", "validate", "-f", write(tmp_path, "p.yaml", GOOD)]) == 0


# ---- get -----------------------------------------------------------------------------------------------
def test_selectors_get_sources_and_the_namespace():
    assert cilium_selector({"matchLabels": {"app": "web"}}, "shop") == {
        "matchLabels": {"any:app": "web", "k8s:io.kubernetes.pod.namespace": "shop"}}
    # a subject's own namespace key is replaced; a peer naming a namespace keeps it
    assert cilium_selector({"matchLabels": {"k8s:io.kubernetes.pod.namespace": "x"}}, "shop") == {
        "matchLabels": {"k8s:io.kubernetes.pod.namespace": "shop"}}
    assert cilium_selector({"matchLabels": {"k8s:io.kubernetes.pod.namespace": "x"}}, "shop", peer=True) == {
        "matchLabels": {"k8s:io.kubernetes.pod.namespace": "x"}}
    exprs = cilium_selector({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, "")
    assert exprs == {"matchExpressions": [{"key": "any:tier", "operator": "Exists"}]}
    assert cilium_selector({"matchLabels": {"role": "db"}}, "ns", default_source="k8s") == {
        "matchLabels": {"k8s:io.kubernetes.pod.namespace": "ns", "k8s:role": "db"}}


def test_rules_json_carry_the_origin_labels():
    obj = validate_object(yaml.safe_load(GOOD), "test")
    obj["metadata"]["uid"] = "u-1"
    [rule] = policy_rules_json(obj)
    assert rule["endpointSelector"] == {"matchLabels": {"any:app": "web", "k8s:io.kubernetes.pod.namespace": "shop"}}
    assert rule["ingress"][0]["fromEndpoints"] == [
        {"matchLabels": {"any:app": "client", "k8s:io.kubernetes.pod.namespace": "shop"}}]
    assert rule["ingress"][1] == {"fromEntities": ["host"]}
    assert rule["labels"] == [
        {"key": "io.cilium.k8s.policy.derived-from", "value": "CiliumNetworkPolicy", "source": "k8s"},
        {"key": "io.cilium.k8s.policy.name", "value": "allow-web", "source": "k8s"},
        {"key": "io.cilium.k8s.policy.namespace", "value": "shop", "source": "k8s"},
        {"key": "io.cilium.k8s.policy.uid", "value": "u-1", "source": "k8s"},
    ]


def test_clusterwide_rules_have_no_namespace():
    obj = cnp("cw", {"endpointSelector": {"matchLabels": {"app": "x"}}, "ingress": [{"fromEntities": ["world"]}]},
              kind="CiliumClusterwideNetworkPolicy")
    [rule] = policy_rules_json(obj)
    assert rule["endpointSelector"] == {"matchLabels": {"any:app": "x"}}
    assert [lbl["key"] for lbl in rule["labels"]] == ["io.cilium.k8s.policy.derived-from", "io.cilium.k8s.policy.name"]


def test_policy_get_text_ends_with_notes_and_revision():
    l7 = validate_object(yaml.safe_load(L7), "test")
    text = render_policy_get([l7], 42)
    lines = text.splitlines()
    assert lines[-2:] == [f"Note: CiliumNetworkPolicy/default/l7: spec.egress[1].toPorts[0].rules: {L7_RULES}",
                          "Revision: 42"]
    rules = json.loads("\n".join(lines[:-2]))
    assert len(rules) == 1 and rules[0]["egress"][0] == {"toFQDNs": [{"matchName": "example.com"}]}
    assert render_policy_get([], 7) == "[]\nRevision: 7"


class FakeStore:
    def __init__(self, objs: dict[str, list[dict]], revisions: dict[str, int]):
        self.objs, self.revisions, self.calls = objs, revisions, []

    def list(self, group, kind, namespace=None):
        self.calls.append((kind, namespace))
        found = [o for o in self.objs.get(kind, []) if namespace is None or o["metadata"].get("namespace") == namespace]
        return found, self.revisions.get(kind, 1)


def test_stored_policies_filter_by_namespace_but_keep_clusterwide_ones():
    a = cnp("a", {"endpointSelector": {}, "ingress": [{}]}, ns="x")
    b = cnp("b", {"endpointSelector": {}, "ingress": [{}]}, ns="y")
    cw = cnp("cw", {"endpointSelector": {}, "ingress": [{}]}, kind="CiliumClusterwideNetworkPolicy")
    store = FakeStore({"CiliumNetworkPolicy": [a, b], "CiliumClusterwideNetworkPolicy": [cw]},
                      {"CiliumNetworkPolicy": 10, "NetworkPolicy": 12, "CiliumClusterwideNetworkPolicy": 11})
    objs, rev = stored_policies(store, "x")
    assert [o["metadata"]["name"] for o in objs] == ["a", "cw"] and rev == 12
    assert ("CiliumClusterwideNetworkPolicy", None) in store.calls


def test_policy_get_command_json(monkeypatch, capsys):
    a = cnp("a", {"endpointSelector": {"matchLabels": {"app": "w"}}, "ingress": [{}]}, ns="x")
    knp = validate_object({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                           "metadata": {"name": "np", "namespace": "x"},
                           "spec": {"podSelector": {"matchLabels": {"role": "db"}}, "policyTypes": ["Ingress"]}},
                          "test")
    store = FakeStore({"CiliumNetworkPolicy": [a], "NetworkPolicy": [knp]}, {"NetworkPolicy": 5})
    monkeypatch.setattr(target, "cluster_store", lambda lab: store)
    assert main(["policy", "get", "-A", "-o", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["revision"] == 5 and data["notes"] == []
    assert [r["labels"][0]["value"] for r in data["policy"]] == ["CiliumNetworkPolicy", "NetworkPolicy"]
    assert data["policy"][1]["endpointSelector"] == {
        "matchLabels": {"k8s:io.kubernetes.pod.namespace": "x", "k8s:role": "db"}}
    assert main(["policy", "get"]) == 0
    assert capsys.readouterr().out.endswith("Revision: 5\n")


def test_policy_subcommand_is_required():
    with pytest.raises(SystemExit):
        main(["policy"])
