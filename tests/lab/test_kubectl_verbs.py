"""kubectl verbs on a demo lab: get -w sees a scale-up, --field-selector, wait --for=delete, logs -f, describe."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from membrane.lab.paths import LabPaths
from membrane.store.etcd import EtcdClient
from membrane.store.resources import ResourceStore
from tests.lab.conftest import make_lab
from tests.lab.harness import MEMBRANE, Lab
from tests.readme_commands import ROOT


@pytest.fixture(scope="module")
def lab(lab_requirements: None) -> Iterator[Lab]:
    for lab in make_lab():
        lab.run("apply", "-f", f"{ROOT}/examples/demo.yaml")
        lab.run("wait", "--for=condition=Available", "deployment/webpod", "--timeout=90s")
        yield lab


def test_watch_prints_a_new_pod(lab: Lab) -> None:
    watcher = subprocess.Popen([MEMBRANE, "--lab", lab.name, "get", "pods", "-l", "app=webpod", "-w"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        lab.run("scale", "deployment", "webpod", "--replicas=3")
        lab.run("wait", "--for=condition=Available", "deployment/webpod", "--timeout=60s")
        time.sleep(2)
    finally:
        watcher.terminate()
        out, _err = watcher.communicate(timeout=10)
    lines = out.splitlines()
    assert lines[0].startswith("NAME") and len([ln for ln in lines if ln.startswith("webpod-")]) >= 3, out
    names = {ln.split()[0] for ln in lines[1:]}
    assert len(names) == 3, out  # the two it listed and the new one it saw
    lab.run("scale", "deployment/webpod", "--replicas=2")


def test_field_selector_and_wait_for_delete(lab: Lab) -> None:
    on_w1 = lab.run("get", "pods", "--field-selector", "spec.nodeName=k8s-w1", "-o", "name").stdout.split()
    assert on_w1 and all(n.startswith("pod/webpod-") for n in on_w1)
    ctr = lab.run("get", "pods", "--field-selector=spec.nodeName=k8s-ctr", "--no-headers",
                  "-o", "custom-columns=N:.metadata.name").stdout.split()
    assert ctr == ["curl-pod"]
    bad = lab.run("get", "pods", "--field-selector", "spec.image=x", check=False)
    assert bad.returncode == 1 and "field label not supported" in bad.stderr
    lab.run("delete", "pod", "curl-pod")
    gone = lab.run("wait", "--for=delete", "pod/curl-pod", "--timeout=30s")
    assert gone.stdout.strip() == "pod/curl-pod condition met"


def test_logs_follow_and_describe(lab: Lab) -> None:
    follower = subprocess.Popen([MEMBRANE, "--lab", lab.name, "logs", "-f", "deployment/webpod"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The first line proves the logs arrived; still running after it proves -f follows. Waiting for
        # the line (not a fixed 2 s) keeps this right on a loaded machine where the CLI alone takes ~2.5 s.
        first = follower.stdout.readline() if follower.stdout else ""
        time.sleep(1)
        assert follower.poll() is None, "logs -f ended"
    finally:
        follower.terminate()
        out, err = follower.communicate(timeout=10)
    out = first + out
    assert "Starting up on port 80" in out and err.startswith("Found 2 pods, using pod/webpod-")
    text = lab.run("describe", "deployment", "webpod").stdout
    assert "Replicas:" in text and "2 desired" in text
    node = lab.run("describe", "node", "k8s-w1").stdout
    assert "Non-terminated Pods:" in node and "webpod-" in node


def test_rollout_restart_rolls_and_undo_goes_back(lab: Lab) -> None:
    """replicas 2 with the default 25% bounds: never fewer than 2 ready pods, never more than 3 pods."""
    import json

    lab.run("rollout", "restart", "deployment/webpod")
    watcher = subprocess.Popen([MEMBRANE, "--lab", lab.name, "rollout", "status", "deployment/webpod", "--timeout=90s"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Sampled from etcd directly: a CLI exec per sample takes seconds on a loaded machine and can miss
    # the surge pod's whole life.
    store = ResourceStore(EtcdClient(LabPaths(lab.name).etcd_endpoint), "default")
    seen = []
    while watcher.poll() is None:
        pods = [p for p in store.list("core", "Pod", "default")[0]
                if p["metadata"].get("labels", {}).get("app") == "webpod"]
        ready = [p for p in pods if any(c.get("type") == "Ready" and c.get("status") == "True"
                                        for c in p.get("status", {}).get("conditions", []))]
        seen.append((len(pods), len(ready)))
        time.sleep(0.05)
    out, err = watcher.communicate()
    assert watcher.returncode == 0, out + err
    assert out.strip().endswith('deployment "webpod" successfully rolled out'), out
    assert max(total for total, _ in seen) == 3, seen  # one surge pod at a time
    assert min(ready for _, ready in seen) >= 2, seen  # maxUnavailable 0
    template = json.loads(lab.run("get", "deploy", "webpod", "-o", "json").stdout)["spec"]["template"]
    assert "kubectl.kubernetes.io/restartedAt" in template["metadata"]["annotations"]
    assert lab.run("rollout", "undo", "deployment/webpod").stdout.strip() == "deployment.apps/webpod rolled back"
    lab.run("rollout", "status", "deployment/webpod", "--timeout=90s")
    template = json.loads(lab.run("get", "deploy", "webpod", "-o", "json").stdout)["spec"]["template"]
    assert "kubectl.kubernetes.io/restartedAt" not in (template["metadata"].get("annotations") or {})
    history = lab.run("rollout", "history", "deployment/webpod").stdout.split()
    assert history[-2:] == ["3", "<none>"]


EVENTFUL = """
apiVersion: v1
kind: Pod
metadata: {name: nowhere}
spec:
  nodeSelector: {kubernetes.io/hostname: k8s-none}
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Pod
metadata: {name: scheduled}
spec:
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: l7-only}
spec:
  endpointSelector: {matchLabels: {app: webpod}}
  ingress:
  - toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {l7proto: r2d2, l7: [{cmd: READ}]}}]
"""
NO_AGENT = """
apiVersion: v1
kind: Pod
metadata: {name: no-agent}
spec:
  nodeName: k8s-w2
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
"""


def test_events_for_scheduling_policy_import_and_cni_errors(lab: Lab) -> None:
    lab.apply(EVENTFUL)

    def reasons() -> set[tuple[str, str]]:
        rows = lab.run("get", "events", "--no-headers", "-o",
                       "custom-columns=R:.reason,O:.involvedObject.name").stdout.split("\n")
        return {tuple(r.split()) for r in rows if r.strip()}  # type: ignore[misc]

    want = {("FailedScheduling", "nowhere"), ("Scheduled", "scheduled"), ("PolicyNotEnforced", "l7-only")}
    lab.wait_for(lambda: want <= reasons(), 30, f"events {want}")
    table = lab.run("get", "events").stdout.splitlines()
    assert table[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert any("pod/nowhere" in line and "didn't match Pod's node affinity/selector" in line for line in table)
    assert "imported, but not enforced here: L7 rules" in lab.run("describe", "cnp", "l7-only").stdout
    described = lab.run("describe", "pod", "scheduled").stdout
    assert "Normal  Scheduled" in described and "default-scheduler" in described
    lab.run("delete", "pod", "nowhere", "scheduled")
    lab.run("delete", "cnp", "l7-only")
    lab.run("lab", "stop", "agent-k8s-w2")
    try:
        lab.apply(NO_AGENT)
        lab.wait_for(lambda: ("FailedCreatePodSandBox", "no-agent") in reasons(), 60, "a sandbox failure event")
        text = lab.run("describe", "pod", "no-agent").stdout
        assert "Warning  FailedCreatePodSandBox" in text and 'plugin type="membrane-cni" failed (add)' in text
    finally:
        lab.run("lab", "start", "agent-k8s-w2")
    lab.wait_pods_ready(["no-agent"], timeout=90)
    lab.run("delete", "pod", "no-agent")


CRASHER = """
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  nodeName: k8s-w1
  containers: [{name: c, image: busybox, command: [sh, -c, "echo run-$(cat /proc/sys/kernel/random/uuid); sleep 1; exit 1"]}]
"""


def test_logs_previous_after_a_restart(lab: Lab) -> None:
    import json

    lab.apply(CRASHER)

    def restarted() -> bool:
        pod = json.loads(lab.run("get", "pod", "crasher", "-o", "json").stdout)
        counts = [c.get("restartCount", 0) for c in pod.get("status", {}).get("containerStatuses") or []]
        return bool(counts) and counts[0] >= 1

    lab.wait_for(restarted, 60, "a restart of crasher")
    lab.wait_for(lambda: lab.run("logs", "crasher").stdout.startswith("run-"), 30, "the new instance's output")
    previous = lab.run("logs", "crasher", "-p").stdout.split()
    current = lab.run("logs", "crasher").stdout.split()
    assert len(previous) == 1 and previous[0].startswith("run-"), previous
    assert current and previous != current[:1], (previous, current)
    both = lab.run("logs", "crasher", "-p", "-f", check=False)
    assert both.returncode == 1 and "only one of follow (-f) or previous (-p)" in both.stderr
    lab.run("delete", "pod", "crasher")


STUBBORN = """
apiVersion: v1
kind: Pod
metadata: {name: stubborn}
spec:
  nodeName: k8s-w1
  terminationGracePeriodSeconds: 3
  containers: [{name: c, image: busybox, command: [sh, -c, "trap '' TERM; while true; do sleep 0.2; done"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: quick}
spec:
  nodeName: k8s-w1
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
"""


def test_graceful_deletion(lab: Lab) -> None:
    lab.apply(STUBBORN)
    lab.wait_pods_ready(["stubborn", "quick"], timeout=60)
    started = time.monotonic()
    deleter = subprocess.Popen([MEMBRANE, "--lab", lab.name, "delete", "pod", "stubborn"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    row = lab.run("get", "pod", "stubborn", "--no-headers").stdout.split()
    assert row[2] == "Terminating", row
    out, err = deleter.communicate(timeout=60)
    took = time.monotonic() - started
    assert deleter.returncode == 0 and out.strip() == 'pod "stubborn" deleted', out + err
    assert 2.5 <= took < 20, took  # it ignores SIGTERM: SIGKILL after its 3 s grace period
    assert lab.run("get", "pod", "stubborn", check=False).returncode == 1
    described = lab.run("describe", "pod", "quick").stdout
    assert "Terminating" not in described
    not_waiting = lab.run("delete", "pod", "quick", "--wait=false")
    assert not_waiting.stdout.strip() == 'pod "quick" deleted'
    lab.wait_for(lambda: lab.run("get", "pod", "quick", check=False).returncode == 1, 30, "quick to go")
    bad = lab.run("delete", "pod", "x", "--force", check=False)
    assert bad.returncode == 1 and "--force requires --grace-period=0" in bad.stderr
