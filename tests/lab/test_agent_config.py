"""The lab only builds each agent's configuration: every agent runs as ``membrane-agent
--config-file <file>`` and nothing else, and the file holds what a real host would set (etcd,
node, underlay device, directories). A restarted agent comes back from the same file."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from membrane.lab.daemons import agent_config_file, daemon_state
from tests.lab.conftest import make_lab
from tests.lab.harness import Lab


@pytest.fixture(scope="module")
def lab(lab_requirements: None) -> Iterator[Lab]:
    yield from make_lab()


def _argv(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return [a.decode() for a in fh.read().split(b"\0") if a]


def test_each_agent_starts_from_its_config_file_only(lab: Lab) -> None:
    lab.run("status", "--wait", "--wait-duration", "60")
    node = "k8s-w1"
    path = agent_config_file(lab.name, node)
    with open(path) as fh:
        data = json.load(fh)
    assert data["node"] == node and data["underlay-device"] == "eth1"
    assert data["etcd-endpoints"] == [lab.paths.etcd_endpoint]
    state = daemon_state(lab.name, f"agent-{node}")
    assert state is not None and state.pid
    argv = _argv(state.pid)
    assert argv[-3].endswith("membrane-agent") and argv[-2:] == ["--config-file", path], argv
    status = lab.agent_status(node)
    assert status["node"] == node and status["ready"], status
    assert lab.paths.etcd_endpoint in status["kvstore"]["msg"]
    lab.run("lab", "restart", f"agent-{node}")
    back = lab.wait_for(lambda: (s := lab.agent_status(node)).get("ready") and s, timeout=60, what="agent ready again")
    assert back["node"] == node
