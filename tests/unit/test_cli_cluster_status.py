"""``membrane status`` (cluster view) rendering, and ``endpoint list`` across nodes, without a lab."""

from __future__ import annotations

from membrane.cli.cluster_status import ClusterStatus, Daemon, healthy, render, to_json
from membrane.cli.dbg_printers import render_endpoint_list


def _status(**overrides: Daemon) -> ClusterStatus:
    daemons = {n: Daemon(n, "running", True) for n in
               ("etcd", "kubelet", "operator", "relay", "agent-k8s-ctr", "agent-k8s-w1", "agent-k8s-w2")}
    daemons.update(overrides)
    return ClusterStatus(list(daemons.values()), pods_total=5, pods_managed=5)


def test_all_well_names_every_node_and_daemon() -> None:
    status = _status()
    text = render(status)
    assert healthy(status)
    assert "Membrane:          OK" in text and "Errors:" not in text
    assert "Desired: 3, Ready: 3/3, Available: 3/3" in text
    for name in ("k8s-ctr", "k8s-w1", "k8s-w2", "membrane-operator", "hubble-relay", "etcd", "kubelet"):
        assert name in text
    assert "Cluster Pods:     5/5 managed by Membrane" in text


def test_a_stopped_agent_and_a_failing_component_are_named_with_their_node() -> None:
    status = _status(**{"agent-k8s-w2": Daemon("agent-k8s-w2", "STOPPED (lab stop)", False),
                        "agent-k8s-w1": Daemon("agent-k8s-w1", "running", True, ["KVStore"])})
    text = render(status)
    assert not healthy(status)
    assert "Membrane:          2 errors" in text
    assert "Desired: 3, Ready: 1/3, Available: 2/3" in text
    lines = text.splitlines()
    assert any("k8s-w2" in line and "STOPPED (lab stop)" in line and "Agents" not in line for line in lines)
    errors = [line.split() for line in lines[lines.index(next(x for x in lines if x.startswith("Errors:"))):]]
    assert ["membrane-agent", "k8s-w1", "agent-k8s-w1:", "KVStore", "failing"] in [e[-5:] for e in errors]
    assert to_json(status)["errors"][0] == {"component": "membrane-agent", "where": "k8s-w1",
                                            "message": "agent-k8s-w1: KVStore failing"}
    down = _status(relay=Daemon("relay", "NOT RUNNING", False))
    assert "Hubble Relay:      1 errors" in render(down) and "Desired: 1, Ready: 0/1" in render(down)


def test_endpoint_list_across_nodes_has_a_node_column() -> None:
    eps = [{"id": 1, "node": "k8s-w1", "status": {"state": "ready", "identity": {"id": 300, "labels": ["k8s:app=a"]}}},
           {"id": 1, "node": "k8s-ctr", "status": {"state": "ready", "identity": {"id": 301, "labels": ["k8s:app=b"]}}}]
    lines = render_endpoint_list(eps, node_column=True).splitlines()
    assert lines[0].split()[:2] == ["NODE", "ENDPOINT"]
    assert [line.split()[:3] for line in lines[2:4]] == [["k8s-ctr", "1", "Unknown"], ["k8s-w1", "1", "Unknown"]]
    assert render_endpoint_list(eps).splitlines()[0].startswith("ENDPOINT")
