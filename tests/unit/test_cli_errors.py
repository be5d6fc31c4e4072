"""Bad command-line arguments (issue 18 item 5): one kubectl-style ``error:`` line, exit 1, no traceback.

Every case here is refused before the cluster store is opened: ``cluster_store`` is replaced by one
that fails the test if it is called.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from membrane.cli import target
from membrane.cli.main import main


@pytest.fixture(autouse=True)
def no_store(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(lab: str) -> Any:
        raise AssertionError("the store was opened for a bad argument")

    monkeypatch.setattr(target, "cluster_store", refuse)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's errors
        rc = exc.code if isinstance(exc.code, int) else 1
    return rc, capsys.readouterr().err


BAD = [
    (["get", "pods", "-n", "default/x"], "error: invalid namespace 'default/x': a lowercase RFC 1123 label"),
    (["get", "pods", "-n", ""], "error: a namespace must be specified"),
    (["get", "pods", "-n", "N" * 64], "error: invalid namespace"),
    (["delete", "pod", "rl-client/x"], "error: there is no need to specify a resource type as a separate argument"),
    (["delete", "pod", ""], "error: resource name may not be empty"),
    (["delete", "pod", "a", ""], "error: resource name may not be empty"),
    (["delete", "pod", ".."], "error: invalid resource name '..'"),
    (["delete", "pod/a", "b"], "error: there is no need to specify a resource type"),
    (["delete", "nosuchkind", "a"], 'error: the server doesn\'t have a resource type "nosuchkind"'),
    (["delete", "pod", "x", "-n", "a/b"], "error: invalid namespace"),
    (["get", "pods", "-l", "a in (b"], "error: unable to parse requirement 'a in (b'"),
    (["get", "pods", "-l", "!!!"], "error: unable to parse requirement '!!!'"),
    (["get", "pods", "-l", "a=b=c"], "error: unable to parse requirement"),
    (["get", "pods", "-l", "a" * 300], "error: unable to parse requirement"),
    (["get", "pod", "a/b"], "error: there is no need to specify a resource type"),
    (["get", "pod", "x%y"], "error: invalid resource name 'x%y'"),
    (["get", "/x"], "error: arguments in resource/name form must have a single resource and name"),
    (["get", ","], "error: You must specify the type of resource to get."),
    (["get", "nosuchkind"], 'error: the server doesn\'t have a resource type "nosuchkind"'),
    (["get", "pods", "-o", "xml"], 'error: unable to match a printer suitable for the output format "xml"'),
    (["get", "pods", "-n"], "error: argument -n/--namespace: expected one argument"),
    (["get"], "error: the following arguments are required: kind"),
    (["label", "pod", "a/b", "x=y"], "error: there is no need to specify a resource type"),
    (["label", "pod", "", "x=y"], "error: resource name may not be empty"),
    (["label", "pod", "a", "x=y", "-n", "Bad"], "error: invalid namespace 'Bad'"),
    (["label", "pod", "a", "=y"], "error: invalid label"),
    (["exec", "ns/pod", "--", "ls"], "error: there is no need to specify a resource type"),
    (["exec", "-n", "x/y", "pod", "--", "ls"], "error: invalid namespace"),
    (["apply", "-f", "/nonexistent/x.yaml"], 'error: the path "/nonexistent/x.yaml" does not exist'),
    (["apply", "-f", "x.yaml", "-n", "a/b"], "error: invalid namespace"),
    (["nosuchcommand"], "error: argument COMMAND: invalid choice: 'nosuchcommand'"),
    (["lab", "create", "--nodes", "x"], "error: argument --nodes: invalid int value: 'x'"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a) or "''" for a, _ in BAD])
def test_bad_arguments_get_one_error_line_and_exit_1(argv, message, capsys):
    rc, err = run(argv, capsys)
    assert rc == 1, err
    assert "Traceback" not in err
    assert err.startswith(message), err
    lines = err.rstrip("\n").split("\n")
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("See 'membrane")), err


def test_bad_manifest_and_frozen_field_on_apply(tmp_path: Path, capsys, monkeypatch) -> None:
    """A refused update names the file, document and field; nothing reaches apply_many's writes."""
    from membrane.model.update import check_update

    stored = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
              "spec": {"containers": [{"name": "c", "image": "nginx"}], "nodeName": "k8s-w1"}}

    class Store:
        writes = 0

        def list(self, group: str, kind: str, ns: str | None = None) -> tuple[list[dict], int]:
            return ([{"metadata": {"name": "default"}}] if kind == "Namespace" else []), 1

        def get(self, group: str, kind: str, ns: str, name: str) -> dict | None:
            return stored if (kind, name) == ("Pod", "web") else None

        def apply_many(self, objs: list[dict], check_update: Any = None) -> list:
            for obj in objs:
                if obj["kind"] == "Pod" and check_update is not None:
                    check_update(stored, obj)
            self.writes += 1
            return [(obj, "configured") for obj in objs]

    store = Store()
    monkeypatch.setattr(target, "cluster_store", lambda lab: store)
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n---\n"
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\n"
        "spec: {nodeName: k8s-w2, containers: [{name: c, image: nginx}]}\n"
    )
    assert check_update is not None
    rc, err = run(["apply", "-f", str(manifest)], capsys)
    assert rc == 1 and store.writes == 0
    assert err == f'error: {manifest}:doc 2: spec.nodeName: Invalid value: "k8s-w2": field is immutable\n'

    manifest.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 100000000000000000000}\n")
    rc, err = run(["apply", "-f", str(manifest)], capsys)
    assert rc == 1 and store.writes == 0
    assert err.startswith(f"error: {manifest}:doc 1: spec.replicas: Invalid value: 1")


def test_the_issues_commands_in_a_real_process_print_no_traceback() -> None:
    """The five commands from the issue, as a user runs them (no lab exists under this name)."""
    cases = [
        ["get", "pods", "-n", "default/x"], ["delete", "pod", "rl-client/x"], ["delete", "pod", ""],
        ["get", "pods", "-l", "a in (b"], ["get", "pods", "-l", "!!!"],
    ]
    for argv in cases:
        proc = subprocess.run([sys.executable, "-m", "membrane.cli.main", "--lab", "nolab-x", *argv],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1, (argv, proc.stderr)
        assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr, (argv, proc.stderr)
        assert proc.stdout == ""
