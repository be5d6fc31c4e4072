"""``membrane --etcd URL ...`` with no lab at all: the nodes come from the store's Node objects and
each agent's API socket from its node entry (``/membrane/<cluster>/nodes/<node>``), as an agent on a
real host publishes them. A real etcd; the agent is its API server on a temporary socket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from membrane.agent.api import APIServer
from membrane.cli.main import main
from membrane.store.etcd import EtcdClient
from membrane.store.resources import ResourceStore
from tests.etcd_fixture import etcd_server  # noqa: F401

STATUS = {"node": "host-a", "ready": True, "kvstore": {"state": "Ok", "msg": "etcd: 1/1 connected"},
          "membrane": {"state": "Ok", "msg": "0.1.0 (node host-a)"}, "controllers": [], "modules-health": []}


@pytest.fixture
def agent(etcd_server: Any, tmp_path: Path) -> Iterator[str]:  # noqa: F811
    sock = str(tmp_path / "agent-host-a.sock")
    api = APIServer(sock)
    api.route("GET", "/v1/status", lambda _b: STATUS)
    api.route("GET", "/v1/endpoints", lambda _b: [])
    api.start()
    client = EtcdClient(etcd_server.endpoint)
    store = ResourceStore(client, "prod")
    for name in ("host-a", "host-b"):
        store.put_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {}})
    client.put("/membrane/prod/nodes/host-a", json.dumps({"name": "host-a", "apiSocket": sock}))
    try:
        yield etcd_server.endpoint
    finally:
        api.stop()
        client.delete_prefix("/membrane/prod/")
        client.close()


def test_status_of_a_node_is_found_through_the_store(agent: str, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMBRANE_ETCD", raising=False)
    rc = main(["--etcd", agent, "--cluster", "prod", "--lab", "no-such-lab", "status", "--node", "host-a", "-o", "json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert json.loads(out.out)["node"] == "host-a"


def test_a_node_without_a_running_agent_and_an_unknown_node_are_named(agent: str, capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBRANE_ETCD", agent)  # the environment addresses the cluster as well
    assert main(["--cluster", "prod", "status", "--node", "host-b"]) == 1
    assert "node host-b: its agent has published no apiSocket" in capsys.readouterr().err
    assert main(["--cluster", "prod", "status", "--node", "host-z"]) == 1
    err = capsys.readouterr().err
    assert "node 'host-z' not in etcd" in err and "host-a, host-b" in err


def test_the_cluster_view_lists_agents_from_the_store(agent: str, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMBRANE_ETCD", raising=False)
    rc = main(["--etcd", agent, "--cluster", "prod", "status", "-o", "json"])
    data = json.loads(capsys.readouterr().out)
    daemons = {d["name"]: d for d in data["daemons"]}
    assert daemons["agent-host-a"]["ok"] and not daemons["agent-host-b"]["ok"]
    assert rc == 1  # host-b has no agent
