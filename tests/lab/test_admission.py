"""Issue 18's bad-input probes against a real lab: admission as strict as the API server, hostile YAML
and bad CLI arguments are refused with one precise line, exit 1, and nothing changes in the cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.lab.conftest import make_lab
from tests.lab.harness import Lab

LONG_NAME = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 characters: the longest valid pod name


@pytest.fixture(scope="module")
def lab(lab_requirements: None) -> Iterator[Lab]:
    yield from make_lab("--nodes", "2")


def pod(name: str, node: str) -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\n"
            f"spec:\n  nodeName: {node}\n  containers: [{{name: c, image: alpine}}]\n")


def refused(lab: Lab, *args: str, manifest: str | None = None) -> str:
    proc = lab.run(*args, input=manifest, check=False, timeout=30)
    assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


def test_longest_valid_pod_name_runs(lab: Lab) -> None:
    lab.apply(pod(LONG_NAME, "k8s-w1"))
    lab.wait_pods_ready([LONG_NAME], timeout=90)
    assert lab.exec(LONG_NAME, "hostname").stdout.strip() == "a" * 63
    lab.run("delete", "pod", LONG_NAME)


def test_node_name_cannot_be_changed_by_reapplying(lab: Lab) -> None:
    lab.apply(pod("pinned", "k8s-w1"))
    lab.wait_pods_ready(["pinned"])
    err = refused(lab, "apply", "-f", "-", manifest=pod("pinned", "k8s-ctr"))
    assert err == 'error: <stdin>:doc 1: spec.nodeName: Invalid value: "k8s-ctr": field is immutable\n'
    assert lab.pod("pinned")["spec"]["nodeName"] == "k8s-w1"
    lab.run("delete", "pod", "pinned")


def test_int32_overflow_is_refused_and_nothing_stored(lab: Lab) -> None:
    manifest = ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: huge}\nspec:\n"
                "  replicas: 100000000000000000000\n  selector: {matchLabels: {app: huge}}\n"
                "  template:\n    metadata: {labels: {app: huge}}\n"
                "    spec: {containers: [{name: c, image: alpine}]}\n")
    err = refused(lab, "apply", "-f", "-", manifest=manifest)
    assert "spec.replicas: Invalid value: 100000000000000000000: must be between 0 and 2147483647" in err
    assert lab.run("get", "deployment", "huge", check=False).returncode != 0


def test_alias_bomb_returns_quickly(lab: Lab) -> None:
    lines = ["apiVersion: v1", "kind: Pod", "metadata: {name: bomb}", "spec:", "  l0: &l0 [a,a,a,a,a,a,a,a,a]"]
    lines += [f"  l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10)]
    start = time.monotonic()
    err = refused(lab, "apply", "-f", "-", manifest="\n".join(lines) + "\n")
    assert time.monotonic() - start < 10
    assert "excessive aliasing" in err and err.startswith("error: <stdin>:doc 1: invalid YAML at line")


@pytest.mark.parametrize("argv", [
    ("get", "pods", "-n", "default/x"), ("delete", "pod", "rl-client/x"), ("delete", "pod", ""),
    ("get", "pods", "-l", "a in (b"), ("get", "pods", "-l", "!!!"), ("get", "pods", "a%b"),
])
def test_bad_cli_arguments_with_a_running_lab(lab: Lab, argv: tuple[str, ...]) -> None:
    refused(lab, *argv)
