"""``policy simulate`` and the datapath agree on a randomised corpus (issue 11).

Six pods in two namespaces with random labels serve TCP 8080 and 9090. Each round draws a few random
policies (CNPs with allow and deny items, endpoint and entity peers, optional ports; NetworkPolicies
with pod and namespace selectors) from a fixed seed, asks ``membrane policy simulate`` (nothing
stored: every pair it does not list stays allowed) for every (source, destination, port), applies the
policies, probes every pair from inside the pods and compares. Five rounds of 60 pairs: 300 pairs.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import time
from typing import Any

import pytest

from tests.lab.harness import Lab

pytestmark = pytest.mark.root

PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe.py")
IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.52"
PORTS = (8080, 9090)
NAMESPACES = ("default", "blue")
NODES = ("k8s-ctr", "k8s-w1", "k8s-w2")
APPS, TIERS = ("a", "b", "c"), ("x", "y")
SEED, ROUNDS = 11, 5


def corpus_pods(rng: random.Random) -> list[dict[str, Any]]:
    pods = []
    for i in range(6):
        containers = [{"name": f"s{port}", "image": IMAGE,
                       "args": ["serve-hostname", "--tcp", "--http=false", "--port", str(port)],
                       "ports": [{"containerPort": port, "protocol": "TCP"}]} for port in PORTS]
        pods.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": f"p{i}", "namespace": NAMESPACES[i % 2],
                                  "labels": {"app": rng.choice(APPS), "tier": rng.choice(TIERS)}},
                     "spec": {"nodeName": NODES[i % 3], "containers": containers}})
    return pods


def _labels(rng: random.Random) -> dict[str, str]:
    return rng.choice([{}, {"app": rng.choice(APPS)}, {"tier": rng.choice(TIERS)},
                       {"app": rng.choice(APPS), "tier": rng.choice(TIERS)}])


def _peer(rng: random.Random, direction: str) -> dict[str, Any]:
    prefix = "from" if direction.startswith("ingress") else "to"
    kind = rng.random()
    if kind < 0.15:
        return {f"{prefix}Entities": [rng.choice(["cluster", "all"])]}
    sel: dict[str, Any] = {"matchLabels": _labels(rng)}
    if kind < 0.4:
        sel["matchLabels"] = {**sel["matchLabels"], "k8s:io.kubernetes.pod.namespace": rng.choice(NAMESPACES)}
    return {f"{prefix}Endpoints": [sel]}


def _cnp(rng: random.Random, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"endpointSelector": {"matchLabels": _labels(rng)}}
    for _ in range(rng.randint(1, 3)):
        direction = rng.choice(["ingress", "egress", "ingress", "egress", "ingressDeny", "egressDeny"])
        item = _peer(rng, direction)
        if rng.random() < 0.5:
            item["toPorts"] = [{"ports": [{"port": str(rng.choice(PORTS)), "protocol": "TCP"}]}]
        spec.setdefault(direction, []).append(item)
    return {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
            "metadata": {"name": name, "namespace": rng.choice(NAMESPACES)}, "spec": spec}


def _knp(rng: random.Random, name: str) -> dict[str, Any]:
    types = rng.choice([["Ingress"], ["Egress"], ["Ingress", "Egress"]])
    spec: dict[str, Any] = {"podSelector": {"matchLabels": _labels(rng)}, "policyTypes": types}
    for t in types:
        peers = [] if rng.random() < 0.2 else [rng.choice([
            {"podSelector": {"matchLabels": _labels(rng)}},
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": rng.choice(NAMESPACES)}}},
            {"namespaceSelector": {}, "podSelector": {"matchLabels": _labels(rng)}}])]
        rule: dict[str, Any] = {("from" if t == "Ingress" else "to"): peers} if peers else {}
        if rng.random() < 0.5:
            rule["ports"] = [{"port": rng.choice(PORTS), "protocol": "TCP"}]
        spec[t.lower()] = [rule]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": rng.choice(NAMESPACES)}, "spec": spec}


def corpus_policies(rng: random.Random, round_: int) -> list[dict[str, Any]]:
    return [(_cnp if rng.random() < 0.7 else _knp)(rng, f"r{round_}-{i}") for i in range(rng.randint(1, 3))]


def manifest(objs: list[dict[str, Any]]) -> str:
    return "\n---\n".join(json.dumps(o) for o in objs) + "\n"


Pair = tuple[str, str, int]  # (source ns/name, destination ns/name, port)


def simulated(lab: Lab, policies: list[dict[str, Any]], tmp: str) -> dict[Pair, bool]:
    """The pairs simulate says change (all start allowed: nothing is stored): pair -> allowed after."""
    path = os.path.join(tmp, "candidate.yaml")
    with open(path, "w") as fh:
        fh.write(manifest(policies))
    out = lab.run("policy", "simulate", "-f", path, *(a for p in PORTS for a in ("--port", f"{p}/tcp"))).stdout
    changed: dict[Pair, bool] = {}
    for line in out.splitlines()[1:]:
        if not line.strip() or line.startswith("no reachability"):
            continue
        src, dst, port, _before, after = re.split(r"\s{2,}", line.strip(), maxsplit=4)
        changed[(src, dst, int(port.split("/")[0]))] = after.startswith("allow")
    return changed


def probed(lab: Lab, pods: dict[str, dict[str, Any]], sport_base: int) -> dict[Pair, bool]:
    out: dict[Pair, bool] = {}
    for i, src in enumerate(sorted(pods)):
        ns, name = src.split("/")
        targets = [{"key": d, "ip": pods[d]["status"]["podIP"]} for d in sorted(pods) if d != src]
        spec = {"targets": targets, "ports": list(PORTS), "protocols": ["TCP"], "timeout": 1.0,
                "sport_base": sport_base + i * 50}
        proc = lab.run("exec", "-n", ns, name, "--", sys.executable, PROBE, json.dumps(spec), check=False)
        for r in json.loads(proc.stdout)["results"]:
            out[(src, r["key"], r["port"])] = r["answer"] == r["key"].split("/")[1]
    return out


def test_simulate_agrees_with_the_datapath_on_a_random_corpus(lab: Lab, tmp_path: Any) -> None:
    rng = random.Random(SEED)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "blue"}}
    pod_objs = corpus_pods(rng)
    lab.apply(manifest([namespace, *pod_objs]))
    names = [p["metadata"]["name"] for p in pod_objs]
    ready = {}
    for ns in NAMESPACES:
        mine = [p["metadata"]["name"] for p in pod_objs if p["metadata"]["namespace"] == ns]
        ready.update({f"{ns}/{n}": obj for n, obj in _wait_ready(lab, mine, ns).items()})
    assert len(ready) == len(names)
    baseline = probed(lab, ready, 20000)
    assert all(baseline.values()), f"not every pair reachable without policies: {baseline}"
    disagreements, compared, denied = [], 0, 0
    for round_ in range(ROUNDS):
        policies = corpus_policies(rng, round_)
        predicted_changes = simulated(lab, policies, str(tmp_path))
        lab.apply(manifest(policies))
        try:
            time.sleep(2.0)  # propagation (well under a second) and margin
            seen = probed(lab, ready, 21000 + round_ * 400)
            wrong = {k for k in seen if seen[k] != predicted_changes.get(k, True)}
            if wrong:  # a second look tells lag from a real disagreement
                time.sleep(3.0)
                seen = probed(lab, ready, 21200 + round_ * 400)
                wrong = {k for k in seen if seen[k] != predicted_changes.get(k, True)}
            compared += len(seen)
            denied += sum(not ok for ok in seen.values())
            disagreements += [(round_, k, "simulate", predicted_changes.get(k, True), "datapath", seen[k])
                              for k in sorted(wrong)]
            if wrong:
                print(f"\nround {round_} policies: {manifest(policies)}")
        finally:
            lab.run("delete", "-f", "-", input=manifest(policies), check=False)
        base = 23000 + round_ * 100
        lab.wait_for(lambda base=base: all(probed(lab, ready, base).values()), 20,
                     "every pair reachable again after deleting the round's policies")
    print(f"\nsimulate vs datapath: {compared} pairs compared over {ROUNDS} rounds ({denied} denied), "
          f"{len(disagreements)} disagreements")
    assert compared >= 200
    assert 0 < denied < compared, "the corpus must exercise both verdicts"
    assert not disagreements, disagreements[:20]


def _wait_ready(lab: Lab, names: list[str], ns: str) -> dict[str, dict[str, Any]]:
    def ready() -> dict[str, dict[str, Any]] | None:
        pods = {p["metadata"]["name"]: p for p in lab.get_json("pods", "-n", ns)}
        ok = all(any(c.get("type") == "Ready" and c.get("status") == "True"
                     for c in (pods.get(n, {}).get("status", {}).get("conditions") or [])) for n in names)
        return {n: pods[n] for n in names} if ok else None

    return lab.wait_for(ready, 90, f"pods {names} in {ns} ready")
