"""``membrane status`` on a lab: every node and daemon named; a stopped agent is named with its node and
the command fails; ``--wait`` returns once it is back; the per-agent page is ``dbg status --node N``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.lab.conftest import make_lab
from tests.lab.harness import Lab


@pytest.fixture(scope="module")
def lab(lab_requirements: None) -> Iterator[Lab]:
    yield from make_lab()


def test_cluster_status_names_nodes_and_a_stopped_agent(lab: Lab) -> None:
    ok = lab.run("status", "--wait", "--wait-duration", "60")
    for word in ("Membrane:          OK", "Desired: 3, Ready: 3/3", "k8s-ctr", "k8s-w1", "k8s-w2",
                 "membrane-operator", "hubble-relay", "etcd", "kubelet"):
        assert word in ok.stdout, ok.stdout
    assert "KVStore:" in lab.run("dbg", "status", "--node", "k8s-w1").stdout
    listing = lab.run("endpoint", "list").stdout.splitlines()
    assert listing[0].startswith("NODE") and any(line.startswith("k8s-ctr") for line in listing)
    lab.run("lab", "stop", "agent-k8s-w2")
    try:
        down = lab.run("status", check=False)
        assert down.returncode == 1, down.stdout
        agent_lines = [line for line in down.stdout.splitlines() if "k8s-w2" in line]
        assert any("STOPPED (lab stop)" in line for line in agent_lines), down.stdout
        assert "Desired: 3, Ready: 2/3" in down.stdout
        assert "Errors:" in down.stdout and "agent-k8s-w2: STOPPED (lab stop)" in down.stdout
    finally:
        lab.run("lab", "start", "agent-k8s-w2")
    back = lab.run("status", "--wait", "--wait-duration", "90", check=False)
    assert back.returncode == 0, back.stdout + back.stderr
