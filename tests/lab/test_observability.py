"""Hubble-compatible observability on a lab: flows from the datapath, relay, filters, metrics."""

from __future__ import annotations

import json

import grpc
import pytest

from membrane.hubble.proto.observer import observer_pb2, observer_pb2_grpc
from tests.lab.harness import Lab

PODS = """
apiVersion: v1
kind: Pod
metadata: {name: netpod1, labels: {app: netpod}}
spec:
  nodeName: k8s-ctr
  containers: [{name: c, image: nicolaka/netshoot}]
---
apiVersion: v1
kind: Pod
metadata: {name: netpod2, labels: {app: web}}
spec:
  nodeName: k8s-w1
  containers: [{name: web, image: traefik/whoami, ports: [{containerPort: 80}]}]
"""

DENY_ALL_INGRESS = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web-ingress-nothing}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{}]
"""


@pytest.fixture(scope="module")
def pods(lab: Lab) -> dict:
    lab.apply(PODS)
    return lab.wait_pods_ready(["netpod1", "netpod2"])


def _flows(lab: Lab, *args: str) -> list[dict]:
    out = lab.run("observe", "--last", "500", "-o", "json", *args, timeout=30).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_allowed_connection_shows_handshake_and_close_at_to_endpoint(lab: Lab, pods: dict) -> None:
    server = pods["netpod2"]["status"]["podIP"]
    lab.exec("netpod1", "curl", "-s", "--max-time", "3", f"http://{server}/")

    def handshake() -> list[dict] | None:
        got = [f["flow"] for f in _flows(lab, "--to-pod", "default/netpod2", "--protocol", "tcp")]
        to_ep = [f for f in got if f.get("trace_observation_point") == "TO_ENDPOINT"]
        flags = [set(f["l4"]["TCP"].get("flags", {})) for f in to_ep]
        return got if {"SYN"} in flags and any("FIN" in fl for fl in flags) else None

    flows = lab.wait_for(handshake, 10, "SYN and FIN flows to-endpoint")
    first = flows[0]
    assert first["source"]["pod_name"] == "netpod1" and first["destination"]["pod_name"] == "netpod2"
    assert first["verdict"] == "FORWARDED"
    replies = [f for f in _flows(lab, "--from-pod", "default/netpod2")
               if f["flow"].get("l4", {}).get("TCP", {}).get("flags", {}).get("SYN")]
    assert any(f["flow"].get("is_reply") for f in replies)  # the SYN-ACK is a reply
    compact = lab.run("observe", "--last", "100", "--to-pod", "default/netpod2").stdout
    assert "default/netpod1" in compact and "-> default/netpod2" in compact and "to-endpoint FORWARDED" in compact


def test_policy_drop_is_a_dropped_flow_with_its_reason(lab: Lab, pods: dict) -> None:
    server = pods["netpod2"]["status"]["podIP"]
    lab.apply(DENY_ALL_INGRESS)
    try:
        def dropped() -> list[dict]:
            lab.exec("netpod1", "curl", "-s", "--max-time", "1", f"http://{server}/", check=False)
            return [f["flow"] for f in _flows(lab, "--verdict", "DROPPED", "--to-pod", "default/netpod2")]

        drops = lab.wait_for(dropped, 15, "a DROPPED flow")
        assert drops[-1]["drop_reason_desc"] == "POLICY_DENIED"
        assert drops[-1]["source"]["pod_name"] == "netpod1"
        text = lab.run("observe", "--last", "50", "--verdict", "DROPPED").stdout
        assert "Policy denied DROPPED" in text
    finally:
        lab.run("delete", "cnp", "web-ingress-nothing", "--ignore-not-found")


def test_relay_merges_every_node_and_answers_the_observer_api(lab: Lab, pods: dict) -> None:
    server = pods["netpod2"]["status"]["podIP"]
    lab.exec("netpod1", "ping", "-c", "2", "-i", "0.2", server)
    nodes = lab.wait_for(lambda: {f["node_name"] for f in _flows(lab, "--protocol", "icmp")} >= {"k8s-ctr", "k8s-w1"}
                         and {f["node_name"] for f in _flows(lab)}, 10, "flows from both nodes through the relay")
    assert {"k8s-ctr", "k8s-w1"} <= nodes
    # A plain gRPC client of Hubble's API (observer.Observer) on the relay socket.
    with grpc.insecure_channel(f"unix://{lab.paths.run_dir}/relay.sock") as channel:
        stub = observer_pb2_grpc.ObserverStub(channel)
        status = stub.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=5)
        assert status.max_flows == 3 * 4095 and status.num_flows > 0
        names = {n.name for n in stub.GetNodes(observer_pb2.GetNodesRequest(), timeout=5).nodes}
        assert names == {"k8s-ctr", "k8s-w1", "k8s-w2"}
        got = list(stub.GetFlows(observer_pb2.GetFlowsRequest(number=5), timeout=5))
        assert len([r for r in got if r.HasField("flow")]) == 5
    text = lab.run("status", "--node", "k8s-w1").stdout
    assert "Current/Max Flows:" in text


def test_flow_metrics_move(lab: Lab, pods: dict) -> None:
    def processed() -> float:
        out = lab.run("metrics", "list", "--node", "k8s-w1").stdout
        return sum(float(line.split()[-1]) for line in out.splitlines()
                   if line.startswith("hubble_flows_processed_total"))

    before = processed()
    lab.exec("netpod1", "ping", "-c", "3", "-i", "0.2", pods["netpod2"]["status"]["podIP"])
    lab.wait_for(lambda: processed() > before, 10, "hubble_flows_processed_total to grow")
    assert "cilium_forward_count_total" in lab.run("metrics", "list", "--node", "k8s-w1").stdout
