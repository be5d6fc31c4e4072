"""Policy enforcement end to end on a lab: default deny, allow, explicit deny, relabel, delete."""

from __future__ import annotations

import json
import time

import pytest

from tests.lab.harness import Lab

PODS = """
apiVersion: v1
kind: Pod
metadata: {name: srv, labels: {app: srv}}
spec:
  nodeName: k8s-w1
  containers: [{name: web, image: nginx, ports: [{containerPort: 80, name: http}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: cli, labels: {app: cli}}
spec:
  nodeName: k8s-w2
  containers: [{name: c, image: curlimages/curl}]
"""

ALLOW_CLI = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: srv-from-cli}
spec:
  endpointSelector: {matchLabels: {app: srv}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: cli}}]
      toPorts: [{ports: [{port: "80", protocol: TCP}]}]
"""

DENY_CLI = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: srv-deny-cli}
spec:
  endpointSelector: {matchLabels: {app: srv}}
  ingressDeny:
    - fromEndpoints: [{matchLabels: {app: cli}}]
"""


@pytest.fixture(scope="module")
def pods(lab: Lab) -> dict:
    lab.apply(PODS)
    return lab.wait_pods_ready(["srv", "cli"])


def _code(lab: Lab, ip: str) -> str:
    out = lab.exec("cli", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "1.5",
                   f"http://{ip}/", check=False)
    return out.stdout.strip()


def _drops(lab: Lab, reason: int) -> int:
    metrics = lab.agent_status("k8s-w1").get("datapath-metrics", {})
    return metrics.get(f"{reason}/ingress", {}).get("packets", 0)


def _until(lab: Lab, ip: str, want: str, timeout: float = 5.0) -> float:
    """Seconds until the HTTP result becomes ``want`` (curl's code; 000 = no answer)."""
    start = time.monotonic()
    lab.wait_for(lambda: _code(lab, ip) == want, timeout, f"curl to answer {want}")
    return time.monotonic() - start


def test_allow_rule_switches_to_default_deny_and_admits_only_its_peer(lab: Lab, pods: dict) -> None:
    ip = pods["srv"]["status"]["podIP"]
    assert _code(lab, ip) == "200"  # no policy: everything allowed
    lab.apply(ALLOW_CLI)

    def enforcement() -> str:
        eps = json.loads(lab.run("endpoint", "list", "--node", "k8s-w1", "-o", "json").stdout)
        return next(e for e in eps if e["pod_name"] == "srv")["status"]["policy"]["realized"]["policy-enabled"]

    lab.wait_for(lambda: enforcement() == "ingress", 5, "ingress enforcement on srv")
    assert _code(lab, ip) == "200"  # the allowed peer, and its replies, pass
    before = _drops(lab, 133)
    lab.run("label", "pod", "cli", "app=other", "--overwrite")
    _until(lab, ip, "000")  # relabelled: default deny now drops it (a timeout, not a refusal)
    assert _drops(lab, 133) > before
    lab.run("label", "pod", "cli", "app=cli", "--overwrite")
    _until(lab, ip, "200")


def test_explicit_deny_wins_and_counts_181(lab: Lab, pods: dict) -> None:
    ip = pods["srv"]["status"]["podIP"]
    before = _drops(lab, 181)
    lab.apply(DENY_CLI)
    _until(lab, ip, "000")
    assert _drops(lab, 181) > before
    lab.run("delete", "cnp", "srv-deny-cli")
    _until(lab, ip, "200")


def test_deleting_the_last_policy_restores_default_allow(lab: Lab, pods: dict) -> None:
    ip = pods["srv"]["status"]["podIP"]
    lab.run("delete", "cnp", "srv-from-cli", "--ignore-not-found")
    lab.run("label", "pod", "cli", "app=stranger", "--overwrite")
    _until(lab, ip, "200")
    out = lab.run("endpoint", "list", "--node", "k8s-w1").stdout
    assert "Enabled" not in out
