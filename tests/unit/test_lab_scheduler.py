from __future__ import annotations

from typing import Any

from membrane.lab.scheduler import schedule


def node(name: str, ready: bool = True, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "spec": spec}


NODES = [node("k8s-ctr"), node("k8s-w1"), node("k8s-w2")]


def test_spreads_to_the_least_loaded_node() -> None:
    assert schedule(pod(), NODES, {"k8s-ctr": 2, "k8s-w1": 1, "k8s-w2": 1}, 110).node == "k8s-w1"


def test_node_name_wins_and_unknown_node_is_reported() -> None:
    assert schedule(pod(nodeName="k8s-w2"), NODES, {}, 110).node == "k8s-w2"
    placement = schedule(pod(nodeName="nope"), NODES, {}, 110)
    assert placement.node is None and "nope" in placement.message


def test_node_selector_and_pod_limit() -> None:
    assert schedule(pod(nodeSelector={"kubernetes.io/hostname": "k8s-w2"}), NODES, {}, 110).node == "k8s-w2"
    full = schedule(pod(), NODES, {"k8s-ctr": 2, "k8s-w1": 2, "k8s-w2": 2}, 2)
    assert full.node is None
    assert full.message == "0/3 nodes are available: 3 Too many pods."


def test_not_ready_nodes_are_skipped() -> None:
    assert schedule(pod(), [node("a", ready=False), node("b")], {}, 110).node == "b"
