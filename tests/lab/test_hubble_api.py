"""Hubble as real tools see it, on a live lab: `hubble status`'s health check and ServerStatus over
every node, GetNodes with the nodes' addresses, the relay on TCP :4245, flows that name their Service
(ClusterIP translated to a backend on another node), agent events for endpoints, Services and policies,
peer.Peer/Notify on an agent; and the unmodified `hubble` CLI (``MEMBRANE_HUBBLE_BIN`` or ``hubble`` on
PATH) against the relay's socket, skipped without it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from membrane.datapath.maps.events import ConfigMap
from membrane.hubble.proto.flow import flow_pb2
from membrane.hubble.proto.observer import observer_pb2, observer_pb2_grpc
from membrane.hubble.proto.peer import peer_pb2, peer_pb2_grpc
from membrane.model.monitor_aggregation import LOW, NONE, MonitorAggregation
from tests.lab.harness import Lab
from tests.unit.test_dashboards import DASHBOARDS, expressions, family_of, metric_names

APP = """
apiVersion: v1
kind: Pod
metadata: {name: hb-client, labels: {app: hb-client}}
spec:
  nodeName: k8s-ctr
  containers: [{name: c, image: nicolaka/netshoot}]
---
apiVersion: v1
kind: Pod
metadata: {name: webpod-1, labels: {app: webpod}}
spec:
  nodeName: k8s-w1
  containers: [{name: web, image: traefik/whoami, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: webpod}
spec:
  selector: {app: webpod}
  ports: [{port: 80, targetPort: 80}]
"""
POLICY = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: hb-allow-all}
spec:
  endpointSelector: {matchLabels: {app: webpod}}
  ingress: [{fromEndpoints: [{}]}]
"""
TIMEOUT = 15


@contextmanager
def every_packet_traced(lab: Lab, level: int = NONE) -> Iterator[None]:
    """Monitor aggregation `level` (none: every packet at every point; low: every packet where it
    leaves or is delivered) on every node while the block runs (as bpf.monitorAggregation would set
    it, without restarting the agents), then the lab's own level (the default, medium)."""
    pins = [lab.paths.bpffs_dir(n["metadata"]["name"]) for n in lab.get_json("nodes")]
    before = []
    for pin in pins:
        with ConfigMap.open(pin) as config:
            before.append(config.aggregation())
            config.set_aggregation(MonitorAggregation(level))
    try:
        yield
    finally:
        for pin, agg in zip(pins, before, strict=True):
            with ConfigMap.open(pin) as config:
                config.set_aggregation(agg)


def _channel(lab: Lab, sock: str = "relay.sock") -> grpc.Channel:
    return grpc.insecure_channel(f"unix:{lab.paths.run_dir}/{sock}")


@pytest.fixture(scope="module")
def app(lab: Lab) -> dict:
    lab.apply(APP)
    pods = lab.wait_pods_ready(["hb-client", "webpod-1"])

    def backend() -> bool:
        eps = lab.get_json("ep", "webpod")
        return bool(eps and any(s.get("addresses") for s in eps[0].get("subsets", [])))
    lab.wait_for(backend, 30, "a backend behind webpod")
    ip = lab.get_json("svc", "webpod")[0]["spec"]["clusterIP"]
    lab.wait_for(lambda: lab.exec("hb-client", "curl", "-s", "--max-time", "2", f"http://{ip}/",
                                  check=False).returncode == 0, 30, "webpod through its ClusterIP")
    return {"pods": pods, "cluster_ip": ip}


def test_health_status_and_nodes_as_hubble_asks(lab: Lab) -> None:
    nodes = {n["metadata"]["name"]: n for n in lab.get_json("nodes")}
    with _channel(lab) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="hubble.server.Observer"), timeout=TIMEOUT)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = observer_pb2_grpc.ObserverStub(channel)
        st = stub.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=TIMEOUT)
        assert st.num_connected_nodes.value == len(nodes) and st.num_unavailable_nodes.value == 0
        assert st.max_flows > 0 and st.uptime_ns > 0 and st.version
        listed = stub.GetNodes(observer_pb2.GetNodesRequest(), timeout=TIMEOUT).nodes
    addresses = {n.name: n.address for n in listed}
    assert set(addresses) == set(nodes)
    for name, node in nodes.items():
        ips = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
        assert addresses[name] == f"{ips[0]}:4244"
    assert all(n.tls.enabled and n.tls.server_name.startswith(n.name + ".") for n in listed)
    first = sorted(nodes)[0] if "k8s-ctr" not in nodes else "k8s-ctr"
    listening = lab.node_exec(first, "ss", "-Hltn", "sport", "= :4245").stdout
    assert ":4245" in listening, "the relay listens on TCP :4245 in the first node's namespace"
    metrics = lab.run("metrics", "list", "--node", first).stdout
    assert "hubble_lost_events_total" in metrics and "source=perf_event_ring_buffer" in metrics
    ip = [a["address"] for a in nodes[first]["status"]["addresses"] if a["type"] == "InternalIP"][0]
    hubble_only = lab.node_exec(first, "curl", "-s", "--max-time", "5", f"http://{ip}:9965/metrics").stdout
    assert "hubble_lost_events_total" in hubble_only and "cilium_" not in hubble_only
    scrape = lab.node_exec(first, "curl", "-s", "--max-time", "5", f"http://{ip}:9962/metrics").stdout
    served = {line.split()[2] for line in scrape.splitlines() if line.startswith("# TYPE ")}
    for board in DASHBOARDS:  # every metric of the Grafana dashboards is served
        names = {n for e in expressions(board) for n in metric_names(e)}
        assert not [n for n in names if family_of(n, served) is None], board.name


def test_clusterip_flows_name_the_service(lab: Lab, app: dict) -> None:
    lab.exec("hb-client", "curl", "-s", "--max-time", "3", f"http://{app['cluster_ip']}/")

    def service_flows() -> list[dict]:
        out = lab.run("observe", "--last", "1000", "-o", "json", "--to-service", "default/webpod",
                      timeout=30).stdout
        return [json.loads(line)["flow"] for line in out.splitlines() if line.strip()]
    flows = lab.wait_for(service_flows, 15, "flows to default/webpod")
    assert all(f["destination_service"] == {"name": "webpod", "namespace": "default"} for f in flows)
    backend = app["pods"]["webpod-1"]["status"]["podIP"]
    # the backend on k8s-w1 receives the translated packets: they still name the Service
    assert any(f["IP"]["destination"] == backend and f["node_name"].endswith("k8s-w1") for f in flows)
    replies = lab.run("observe", "--last", "1000", "-o", "json", "--from-service", "default/webpod").stdout
    assert replies.strip(), "the backend's replies name the Service as their source"
    compact = lab.run("observe", "--last", "1000", "--from-service", "default/webpod", "--to-pod",
                      "default/hb-client", "--type", "trace:to-endpoint").stdout
    client_node = app["pods"]["hb-client"]["spec"]["nodeName"]
    if lab.agent_status(client_node)["kube-proxy-replacement"]["features"]["socketLB"]["enabled"]:
        # socket LB: the client's socket talks to the backend itself; no packet is reverse-translated
        assert "<- default/webpod-1:80 " in compact and "<- default/webpod:80 " not in compact, compact
    else:  # the reply reverse-translated for the client comes from the ClusterIP: printed as the Service
        assert "<- default/webpod:80 " in compact, compact


def test_agent_events_for_endpoints_services_and_policies(lab: Lab, app: dict) -> None:
    lab.apply(POLICY)
    try:
        def events() -> dict[int, list] | None:
            with _channel(lab) as channel:
                got = list(observer_pb2_grpc.ObserverStub(channel).GetAgentEvents(
                    observer_pb2.GetAgentEventsRequest(), timeout=TIMEOUT))
            by_type: dict[int, list] = {}
            for r in got:
                by_type.setdefault(r.agent_event.type, []).append(r)
            wanted = (flow_pb2.AGENT_STARTED, flow_pb2.ENDPOINT_CREATED, flow_pb2.SERVICE_UPSERTED,
                      flow_pb2.POLICY_UPDATED, flow_pb2.IPCACHE_UPSERTED)
            return by_type if all(t in by_type for t in wanted) else None
        by_type = lab.wait_for(events, 20, "agent events of every kind")
    finally:
        lab.run("delete", "cnp", "hb-allow-all", check=False)
    created = [r.agent_event.endpoint_update for r in by_type[flow_pb2.ENDPOINT_CREATED]]
    webpod = [e for e in created if e.pod_name == "webpod-1"]
    assert webpod and webpod[0].namespace == "default" and "k8s:app=webpod" in webpod[0].labels
    svc = [r.agent_event.service_upsert for r in by_type[flow_pb2.SERVICE_UPSERTED]]
    assert any(s.name == "webpod" and s.frontend_address.ip == app["cluster_ip"] for s in svc)
    nodes = {r.node_name for r in by_type[flow_pb2.SERVICE_UPSERTED]}
    assert len(nodes) == len(lab.get_json("nodes")), "every agent reports the Service"
    policies = [r.agent_event.policy_update for r in by_type[flow_pb2.POLICY_UPDATED]]
    assert any("k8s:io.cilium.k8s.policy.name=hb-allow-all" in p.labels for p in policies)
    printed = lab.run("observe", "agent-events", "--last", "1000", "--print-node-name").stdout
    assert "ENDPOINT_CREATED (id: " in printed and "pod_name: webpod-1" in printed and "[k8s-w1]: " in printed
    as_json = lab.run("observe", "agent-events", "--last", "1", "-o", "json").stdout
    assert json.loads(as_json)["agent_event"]["type"]
    assert lab.run("observe", "debug-events", "--last", "10").stdout == ""


def test_agent_peer_service_lists_every_node(lab: Lab) -> None:
    nodes = sorted(n["metadata"]["name"] for n in lab.get_json("nodes"))
    with _channel(lab, f"hubble-{nodes[0]}.sock") as channel:
        call = peer_pb2_grpc.PeerStub(channel).Notify(peer_pb2.NotifyRequest(), timeout=TIMEOUT)
        got = [next(call) for _ in nodes]
        call.cancel()
    assert sorted(n.name for n in got) == nodes
    assert all(n.type == peer_pb2.PEER_ADDED and n.address.endswith(":4244") for n in got)
    assert all(n.tls.server_name == f"{n.name}.default.hubble-grpc.cilium.io" for n in got)


def _hubble_bin() -> str | None:
    return os.environ.get("MEMBRANE_HUBBLE_BIN") or shutil.which("hubble")


@pytest.fixture
def hubble(lab: Lab, tmp_path: Path):  # type: ignore[no-untyped-def]
    binary = _hubble_bin()
    if not binary or not os.access(binary, os.X_OK):
        pytest.skip("the hubble CLI is not available: set MEMBRANE_HUBBLE_BIN or put hubble on PATH")
    server = f"unix://{lab.paths.run_dir}/relay.sock"
    env = {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}

    def run(*args: str, follow_until: str = "") -> str:
        if follow_until:  # `observe -f`: read until a line holds follow_until, then stop it
            proc = subprocess.Popen([binary, *args, "--server", server], stdout=subprocess.PIPE, text=True, env=env)
            watchdog = threading.Timer(30, proc.kill)  # nothing matching in 30 s: end the read, fail below
            watchdog.start()
            try:
                for line in proc.stdout or []:
                    if follow_until in line:
                        return line
            finally:
                watchdog.cancel()
                proc.kill()
                proc.wait()
            raise AssertionError(f"hubble {' '.join(args)} ended before printing {follow_until!r}")
        proc2 = subprocess.run([binary, *args, "--server", server], capture_output=True, text=True, timeout=60,
                               env=env)
        assert proc2.returncode == 0, f"hubble {' '.join(args)} failed ({proc2.returncode}): {proc2.stderr}"
        return proc2.stdout
    return run


def test_unmodified_hubble_cli(lab: Lab, app: dict, hubble) -> None:  # type: ignore[no-untyped-def]
    nodes = lab.get_json("nodes")
    status = hubble("status")
    assert "Healthcheck (via" in status and "Ok" in status
    assert f"Connected Nodes: {len(nodes)}/{len(nodes)}" in status
    listed = hubble("list", "nodes")
    assert all(n["metadata"]["name"] in listed for n in nodes) and "Connected" in listed
    lab.exec("hb-client", "curl", "-s", "--max-time", "3", f"http://{app['cluster_ip']}/")
    flows = [json.loads(line) for line in hubble("observe", "--last", "100", "-o", "json").splitlines() if line]
    assert flows and all("flow" in f or "node_status" in f or "lost_events" in f for f in flows)
    assert "webpod" in hubble("observe", "--last", "1000", "--service", "default/webpod")
    assert "default/hb-client" in hubble("observe", "--last", "1000", "--pod", "default/hb-client", "-o", "table")
    hubble("observe", "--last", "10", "--verdict", "DROPPED", "-o", "jsonpb")
    cel = hubble("observe", "--last", "1000", "-o", "json", "--cel-expression",
                 '_flow.destination_service.name == "webpod" && _flow.verdict == Verdict.FORWARDED')
    assert cel and all(json.loads(line)["flow"]["destination_service"]["name"] == "webpod"
                       for line in cel.splitlines() if '"flow"' in line)
    assert "ENDPOINT_CREATED" in hubble("observe", "agent-events", "--last", "1000", "-o", "json")
    hubble("observe", "debug-events", "--last", "10")
    ticker = threading.Timer(1.0, lambda: lab.exec("hb-client", "curl", "-s", "--max-time", "3",
                                                   f"http://{app['cluster_ip']}/", check=False))
    ticker.start()
    try:
        line = hubble("observe", "-f", "--from-pod", "default/hb-client", follow_until="default/hb-client")
    finally:
        ticker.cancel()
        ticker.join()
    assert "FORWARDED" in line


L7_POLICY = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: hb-l7}
spec:
  endpointSelector: {matchLabels: {app: webpod}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: hb-client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET, path: "/"}]}}]
"""


def test_unmodified_hubble_cli_output_formats_l7_and_tcp_4245(lab: Lab, app: dict, hubble) -> None:  # type: ignore[no-untyped-def]
    """Every output format of `hubble observe`, L7 flows as the CLI prints them, to-network and the node
    device's from-network traces (with aggregation none: at the default neither is written for a pod's
    packet, as in Cilium), and the relay on TCP :4245 inside the first node's namespace."""
    backend = app["pods"]["webpod-1"]["status"]["podIP"]
    lab.exec("hb-client", "curl", "-s", "--max-time", "3", f"http://{backend}/")
    table = hubble("observe", "--last", "100", "-o", "table", "--to-ip", backend)
    assert table.splitlines()[0].split()[:4] == ["TIMESTAMP", "SOURCE", "DESTINATION", "TYPE"], table[:300]
    assert "default/webpod-1:80" in table
    jsonpb = [json.loads(line) for line in hubble("observe", "--last", "100", "-o", "jsonpb").splitlines() if line]
    assert jsonpb and all(set(r) & {"flow", "node_status", "lost_events"} for r in jsonpb)
    assert any("time" in r and r.get("node_name") for r in jsonpb)
    dicts = hubble("observe", "--last", "20", "-o", "dict", "--to-ip", backend)
    assert "TIMESTAMP:" in dicts and "VERDICT: FORWARDED" in dicts
    with every_packet_traced(lab):  # to- and from-network: not traced at the default aggregation (medium)
        lab.exec("hb-client", "curl", "-s", "--max-time", "3", f"http://{backend}/")
        network = hubble("observe", "--last", "2000", "--type", "trace:to-network", "--to-ip", backend)
        assert " to-network FORWARDED " in network and "default/webpod-1:80" in network, network[-500:]
        on_device = [json.loads(line)["flow"] for line in hubble("observe", "--last", "2000", "-o", "json",
                                                                   "--interface", "eth1", "--to-ip",
                                                                   backend).splitlines() if line]
    assert on_device and all(f["interface"]["name"] == "eth1" for f in on_device), on_device[-1:]
    assert {f["trace_observation_point"] for f in on_device} >= {"FROM_NETWORK"}, on_device[-1:]
    lab.apply(L7_POLICY)
    try:
        def l7_flows() -> str:
            lab.exec("hb-client", "curl", "-s", "--max-time", "3", f"http://{backend}/", check=False)
            out = hubble("observe", "--last", "1000", "--type", "l7", "--to-ip", backend)
            return out if "http-request FORWARDED" in out else ""
        compact = lab.wait_for(l7_flows, 30, "L7 HTTP flows through the relay")
        assert f"(HTTP/1.1 GET http://{backend}/)" in compact, compact[-500:]
        l7 = [json.loads(line)["flow"] for line in hubble("observe", "--last", "1000", "--type", "l7", "-o", "json",
                                                           "--http-method", "GET").splitlines() if line]
        requests = [f for f in l7 if f["l7"]["type"] == "REQUEST"]
        assert requests and requests[-1]["l7"]["http"]["url"] == f"http://{backend}/", l7[-1:]
        assert any(f["l7"]["type"] == "RESPONSE" and f["l7"]["http"]["code"] == 200 for f in l7), l7[-2:]
        responses = hubble("observe", "--last", "1000", "--type", "l7", "--http-status", "200")
        assert "http-response FORWARDED (HTTP/1.1 200 " in responses, responses[-500:]
    finally:
        lab.run("delete", "cnp", "hb-l7", check=False)
    first = "k8s-ctr" if any(n["metadata"]["name"] == "k8s-ctr" for n in lab.get_json("nodes")) else \
        sorted(n["metadata"]["name"] for n in lab.get_json("nodes"))[0]
    binary = _hubble_bin()
    assert binary
    over_tcp = lab.node_exec(first, binary, "status", "--server", "localhost:4245").stdout
    assert "Healthcheck (via localhost:4245): Ok" in over_tcp, over_tcp
    nodes = lab.node_exec(first, binary, "list", "nodes", "--server", "localhost:4245").stdout
    assert nodes.count("Connected") == len(lab.get_json("nodes")), nodes


NAMED_POLICIES = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: hb-names-allow}
spec:
  endpointSelector: {matchLabels: {app: webpod}}
  ingress: [{fromEndpoints: [{matchLabels: {app: hb-client}}], toPorts: [{ports: [{port: "80"}]}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: hb-names-deny}
spec:
  endpointSelector: {matchLabels: {app: webpod}}
  log: {value: webpod-81-denied}
  ingressDeny: [{fromEndpoints: [{matchLabels: {app: hb-client}}], toPorts: [{ports: [{port: "81"}]}]}]
"""


def test_policy_verdicts_name_the_policies(lab: Lab, app: dict) -> None:
    """`observe --print-policy-names` and ingress_allowed_by/ingress_denied_by, from the agent's rules."""
    backend = app["pods"]["webpod-1"]["status"]["podIP"]
    lab.apply(NAMED_POLICIES)
    try:
        def verdicts(port: int, word: str) -> str | None:
            lab.exec("hb-client", "curl", "-s", "--max-time", "1", f"http://{backend}:{port}/", check=False)
            out = lab.run("observe", "--last", "2000", "--type", "policy-verdict", "--to-ip", backend,
                          "--to-port", str(port), "--print-policy-names", timeout=30).stdout
            lines = [line for line in out.splitlines() if word in line]
            return lines[-1] if lines else None
        allowed = lab.wait_for(lambda: verdicts(80, "ALLOWED BY"), 20, "an allowed verdict with its policy")
        assert "ALLOWED BY hb-names-allow (CiliumNetworkPolicy)" in allowed, allowed
        denied = lab.wait_for(lambda: verdicts(81, "DENIED BY"), 20, "a denied verdict with its policy")
        assert "DENIED BY hb-names-deny (CiliumNetworkPolicy)" in denied, denied
        out = lab.run("observe", "--last", "2000", "--type", "policy-verdict", "--to-ip", backend, "--to-port",
                      "81", "-o", "json").stdout
        flows = [json.loads(line)["flow"] for line in out.splitlines() if line.strip()]
        named = [f for f in flows if f.get("ingress_denied_by")]
        assert named, flows[-1:]
        policy = named[-1]["ingress_denied_by"][0]
        assert policy["name"] == "hb-names-deny" and policy["namespace"] == "default"
        assert policy["kind"] == "CiliumNetworkPolicy" and int(policy["revision"]) > 0
        assert "k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy" in policy["labels"]
        assert named[-1]["policy_log"] == ["webpod-81-denied"]
    finally:
        lab.run("delete", "cnp", "hb-names-allow", "hb-names-deny", check=False)


CROSS_NODE_POLICY = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: hb-cross-node-out}
spec:
  endpointSelector: {matchLabels: {app: hb-client}}
  egress: [{toEndpoints: [{matchLabels: {app: webpod}}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: hb-cross-node-in}
spec:
  endpointSelector: {matchLabels: {app: webpod}}
  ingress: [{fromEndpoints: [{matchLabels: {app: hb-client}}]}]
"""


def test_cross_node_flow_at_the_default_is_verdicts_and_to_endpoint_and_below_it_to_network(lab: Lab,
                                                                                             app: dict) -> None:
    """hb-client on k8s-ctr to webpod-1 on k8s-w1, under a policy on each side. At the default monitor
    aggregation (medium) it is seen as Cilium users see it: a policy verdict on each node and
    to-endpoint where each direction is delivered, no to-network (Cilium's cil_to_netdev traces with
    monitor 0 unless its host firewall's conntrack reports, bpf_lxc not at all after a FIB redirect)
    and no from-network. At low every packet leaving k8s-ctr is to-network, at none every packet
    arriving at k8s-w1's device from-network too, each printed as Hubble does (bpf/lib/netdev_trace.h)."""
    client = app["pods"]["hb-client"]["status"]["podIP"]
    backend = app["pods"]["webpod-1"]["status"]["podIP"]

    def seen(kind: str, since: str = "", src: str = client, dst: str = backend) -> list[dict]:
        lab.exec("hb-client", "curl", "-s", "--max-time", "2", f"http://{backend}/", check=False)
        window = ["--since", since] if since else ["--last", "2000"]
        out = lab.run("observe", *window, "-o", "json", "--type", kind, "--from-ip", src, "--to-ip", dst,
                      timeout=30).stdout
        return [json.loads(line)["flow"] for line in out.splitlines() if line.strip()]

    def nodes(flows: list[dict]) -> set[str]:
        return {f["node_name"].split("/")[-1] for f in flows}

    lab.apply(CROSS_NODE_POLICY)
    try:
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # flows of this test only
        verdicts = lab.wait_for(lambda: (lambda v: v if nodes(v) == {"k8s-ctr", "k8s-w1"} else None)(
            seen("policy-verdict", since=start)), 30, "a policy verdict of hb-client -> webpod-1 on each node")
        assert {(f["node_name"].split("/")[-1], f["traffic_direction"], f["verdict"]) for f in verdicts} == \
            {("k8s-ctr", "EGRESS", "FORWARDED"), ("k8s-w1", "INGRESS", "FORWARDED")}, verdicts
        delivered = lab.wait_for(lambda: seen("trace:to-endpoint", since=start), 20, "to-endpoint of hb-client -> webpod-1")
        assert nodes(delivered) == {"k8s-w1"} and any(f["l4"]["TCP"].get("flags", {}).get("SYN") for f in delivered)
        answered = lab.wait_for(lambda: seen("trace:to-endpoint", since=start, src=backend, dst=client), 20,
                                "to-endpoint of webpod-1 -> hb-client")
        assert nodes(answered) == {"k8s-ctr"} and all(f["is_reply"] is True for f in answered), answered[:1]
        for src, dst in ((client, backend), (backend, client)):
            for point in ("to-network", "from-network"):
                got = seen(f"trace:{point}", since=start, src=src, dst=dst)
                assert got == [], f"{point} {src} -> {dst} traced at the default aggregation: {got[:1]}"
    finally:
        lab.run("delete", "cnp", "hb-cross-node-out", "hb-cross-node-in", check=False)

    with every_packet_traced(lab, LOW):
        leaving = lab.wait_for(lambda: seen("trace:to-network", "10s"), 20, "to-network flows of hb-client -> webpod-1")
        compact = lab.run("observe", "--since", "20s", "--type", "trace:to-network", "--from-ip", client,
                          "--to-ip", backend).stdout
    assert nodes(leaving) == {"k8s-ctr"}, leaving
    syn = [f for f in leaving if f["l4"]["TCP"].get("flags", {}).get("SYN") and not f["l4"]["TCP"]["flags"].get("ACK")]
    assert syn and syn[0]["traffic_direction"] == "EGRESS" and syn[0]["is_reply"] is False, syn[:1]
    per_connection: dict[int, int] = {}
    for f in leaving:
        per_connection[f["l4"]["TCP"]["source_port"]] = per_connection.get(f["l4"]["TCP"]["source_port"], 0) + 1
    # not aggregated at low: every packet leaving (SYN, ACK, request, ACKs, FIN...), once each (from_container's
    # with host routing, none of to_netdev's)
    assert 5 <= max(per_connection.values()) <= 12, [(f["l4"]["TCP"], f.get("interface")) for f in leaving]
    assert "default/hb-client:" in compact and " -> default/webpod-1:80 " in compact
    assert " to-network FORWARDED (TCP Flags: SYN)" in compact, compact
    with every_packet_traced(lab):
        arriving = lab.wait_for(lambda: seen("trace:from-network", "10s"), 20,
                                "from-network flows of hb-client -> webpod-1")
        replies = lab.run("observe", "--since", "20s", "--type", "trace:from-network", "--from-ip", backend,
                          "--to-ip", client, "-o", "json").stdout
    assert nodes(arriving) == {"k8s-w1"}, arriving
    for flows, point in ((leaving, "TO_NETWORK"), (arriving, "FROM_NETWORK")):
        assert all(f["trace_observation_point"] == point and f["verdict"] == "FORWARDED" for f in flows)
        assert all(f["source"]["pod_name"] == "hb-client" and f["destination"]["pod_name"] == "webpod-1"
                   for f in flows), flows
    got = [json.loads(line)["flow"] for line in replies.splitlines() if line.strip()]
    assert got and all(f["node_name"].split("/")[-1] == "k8s-ctr" for f in got), got[:1]
    assert any(f.get("is_reply") is True for f in got), got[:1]
