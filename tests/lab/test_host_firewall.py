"""Issue 11 items 4 and 5 end to end: host firewall and policyCIDRMatchMode=[nodes], on one 3-node lab
created with ``--set hostFirewall.enabled=true --set policyCIDRMatchMode={nodes}`` (before, both were
refused, so every test here failed at lab creation).

4. A CiliumClusterwideNetworkPolicy with ``nodeSelector`` filters the selected node's own traffic: a pod
   on another node (from-netdev), a pod on the same node (from-container) and the outside world reach
   the allowed node port and not the other; a pod the rule does not name reaches neither; another node
   is untouched; ``endpoint list`` shows the host endpoint; Hubble reports the verdicts and drops with
   the host's identity (and still reaches the node's agent through the relay); ``policy validate`` does
   not call the host policy unenforced; deleting the policy opens the port again.
   An egress host policy filters what the node itself sends (to-netdev), not its pods' traffic nor
   NodePort traffic it forwards to another node's backend.
5. A CIDR rule selects node IPs: ``toCIDRSet 192.168.10.0/24 except k8s-w1`` lets the client reach
   k8s-w2's and its own node's IP and not k8s-w1's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lab.conftest import make_lab
from tests.lab.harness import Lab

pytestmark = pytest.mark.root

NODE_IPS = {"k8s-ctr": "192.168.10.100", "k8s-w1": "192.168.10.101", "k8s-w2": "192.168.10.102"}
W1 = NODE_IPS["k8s-w1"]
OPEN, CLOSED = 8080, 9090  # the port the host policy allows, and one it does not name
HOST_ENDPOINT_ID = 4096
SERVE = """
import socket, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    while True:
        c, _ = s.accept(); c.close()
for p in (8080, 9090):
    threading.Thread(target=serve, args=(p,), daemon=True).start()
threading.Event().wait()
"""


def pod(name: str, node: str, app: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"nodeName": node,
                     "containers": [{"name": "c", "image": "nicolaka/netshoot", "command": ["sleep", "infinity"]}]}}


PODS = [pod("client", "k8s-ctr", "client"), pod("near", "k8s-w1", "client"), pod("other", "k8s-ctr", "other")]
WEB = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}},
       "spec": {"nodeName": "k8s-w2", "containers": [{"name": "c", "image": "traefik/whoami"}]}}  # HTTP on 80
NODE_PORT = 30080
WEB_SVC = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"type": "NodePort", "selector": {"app": "web"},
                    "ports": [{"port": 80, "targetPort": 80, "nodePort": NODE_PORT, "protocol": "TCP"}]}}
HOST_POLICY = {
    "apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy", "metadata": {"name": "w1-host"},
    "spec": {"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "k8s-w1"}},
             "ingress": [{"fromEndpoints": [{"matchLabels": {"app": "client"}}],
                          "toPorts": [{"ports": [{"port": str(OPEN), "protocol": "TCP"}]}]},
                         {"fromEntities": ["world"],
                          "toPorts": [{"ports": [{"port": str(OPEN), "protocol": "TCP"}]}]}]}}
WORLD = "192.168.10.200"
HOST_EGRESS = {
    "apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy", "metadata": {"name": "w1-out"},
    "spec": {"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "k8s-w1"}},
             "egress": [{"toEntities": ["world"], "toPorts": [{"ports": [{"port": str(OPEN), "protocol": "TCP"}]}]}]}}
NODES_CIDR = {
    "apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "to-nodes"},
    "spec": {"endpointSelector": {"matchLabels": {"app": "client"}},
             "egress": [{"toCIDRSet": [{"cidr": "192.168.10.0/24", "except": [f"{W1}/32"]}]}]}}


def manifest(*objs: dict[str, Any]) -> str:
    return "\n---\n".join(json.dumps(o) for o in objs) + "\n"


@pytest.fixture(scope="module")
def lab(lab_requirements: None) -> Iterator[Lab]:
    yield from make_lab("--set", "hostFirewall.enabled=true", "--set", "policyCIDRMatchMode={nodes}")


@pytest.fixture(scope="module")
def servers(lab: Lab) -> Iterator[None]:
    """A listener on 8080 and 9090 in every node's namespace (the node itself, not a pod)."""
    procs = [subprocess.Popen(["ip", "netns", "exec", lab.paths.node_netns(node), sys.executable, "-c", SERVE],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for node in (*NODE_IPS, "world")]
    try:
        for node, ip in NODE_IPS.items():
            lab.wait_for(lambda n=node, i=ip: lab.node_exec(n, sys.executable, "-c", _connect(i, CLOSED),
                                                            check=False).returncode == 0, 10, f"{node} listening")
        yield
    finally:
        for proc in procs:  # only the processes this fixture started, by their PID
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def pods(lab: Lab, servers: None) -> dict[str, Any]:
    lab.apply(manifest(*PODS, WEB, WEB_SVC))
    return lab.wait_pods_ready([p["metadata"]["name"] for p in (*PODS, WEB)])


@pytest.fixture
def cleanup(lab: Lab) -> Iterator[list[dict[str, Any]]]:
    objs: list[dict[str, Any]] = []
    yield objs
    if objs:
        lab.run("delete", "--ignore-not-found", "-f", "-", input=manifest(*objs), check=False)


def _connect(ip: str, port: int) -> str:
    return f"import socket; socket.create_connection(({ip!r}, {port}), timeout=1).close()"


def reaches(lab: Lab, source: str, ip: str, port: int) -> bool:
    code = _connect(ip, port)
    if source == "world" or source.startswith("k8s-"):  # the outside world or a node itself
        proc = lab.run("lab", "exec", source, "--", sys.executable, "-c", code, check=False)
    else:
        proc = lab.exec(source, sys.executable, "-c", code, check=False)
    return proc.returncode == 0


def until(lab: Lab, want: dict[tuple[str, str, int], bool], timeout: float = 15) -> None:
    last: dict[tuple[str, str, int], bool] = {}

    def ok() -> bool:
        nonlocal last
        last = {probe: reaches(lab, *probe) for probe in want}
        return last == want

    try:
        lab.wait_for(ok, timeout, "the verdicts the policy asks for")
    except AssertionError:
        wrong = {k: v for k, v in last.items() if want[k] != v}
        raise AssertionError(f"observed differently from wanted: {wrong}") from None


def host_endpoint(lab: Lab, node: str) -> dict[str, Any]:
    rows = json.loads(lab.run("endpoint", "list", "--node", node, "-o", "json").stdout)
    return next(r for r in rows if r["id"] == HOST_ENDPOINT_ID)


def flows(lab: Lab, *args: str) -> list[dict[str, Any]]:
    out = lab.run("observe", "--last", "2000", "-o", "json", *args, timeout=30).stdout
    return [json.loads(line)["flow"] for line in out.splitlines() if line.strip()]


def test_host_policy_filters_the_selected_nodes_traffic(lab: Lab, pods: dict, cleanup: list) -> None:
    ctr = NODE_IPS["k8s-ctr"]
    before = {("client", W1, OPEN): True, ("client", W1, CLOSED): True, ("near", W1, CLOSED): True,
              ("world", W1, CLOSED): True, ("other", W1, OPEN): True}
    until(lab, before)
    assert host_endpoint(lab, "k8s-w1")["status"]["policy"]["realized"]["policy-enabled"] == "none"

    validated = lab.run("policy", "validate", "-f", "-", input=manifest(HOST_POLICY)).stdout
    assert "valid: CiliumClusterwideNetworkPolicy/w1-host" in validated and "nodeSelector" not in validated
    applied = lab.run("apply", "-f", "-", input=manifest(HOST_POLICY))
    cleanup.append(HOST_POLICY)
    assert "Warning:" not in applied.stderr, applied.stderr
    start = time.time()
    until(lab, {
        ("client", W1, OPEN): True, ("client", W1, CLOSED): False,   # another node's pod: from-netdev
        ("near", W1, OPEN): True, ("near", W1, CLOSED): False,       # the node's own pod: from-container
        ("world", W1, OPEN): True, ("world", W1, CLOSED): False,     # outside the cluster
        ("other", W1, OPEN): False,                                  # a pod the rule does not name
        ("client", ctr, CLOSED): True,                               # a node the policy does not select
    })
    ep = host_endpoint(lab, "k8s-w1")
    assert ep["status"]["identity"]["id"] == 1 and "reserved:host" in ep["status"]["labels"]["security-relevant"]
    assert ep["status"]["policy"]["realized"]["policy-enabled"] == "ingress"
    assert host_endpoint(lab, "k8s-ctr")["status"]["policy"]["realized"]["policy-enabled"] == "none"
    listing = lab.run("endpoint", "list", "--node", "k8s-w1").stdout
    assert any(line.split()[:4] == [str(HOST_ENDPOINT_ID), "Enabled", "Disabled", "1"] for line in listing.splitlines())

    # Hubble: the deny as a policy verdict and a drop, both with the host endpoint's identity; the
    # allowed port as an allow verdict. That k8s-w1's flows come back at all shows the relay still
    # reaches its agent (TCP 4244) through the host policy.
    def verdicts() -> list[dict[str, Any]] | None:
        got = [f for f in flows(lab, "--to-identity", "1")  # through the relay
               if f.get("node_name") == "k8s-w1"
               and f.get("l4", {}).get("TCP", {}).get("destination_port") in (OPEN, CLOSED)]
        kinds = {(f["event_type"]["type"], f["verdict"], f["l4"]["TCP"]["destination_port"]) for f in got}
        return got if {(5, "DROPPED", CLOSED), (1, "DROPPED", CLOSED), (5, "FORWARDED", OPEN)} <= kinds else None

    got = lab.wait_for(verdicts, 15, "policy verdicts of the host endpoint")
    drop = next(f for f in got if f["event_type"]["type"] == 1 and f["l4"]["TCP"]["destination_port"] == CLOSED)
    assert drop["drop_reason_desc"] == "POLICY_DENIED" and drop["destination"]["identity"] == 1
    assert time.time() - start < 60

    lab.run("delete", "-f", "-", input=manifest(HOST_POLICY))
    until(lab, {("client", W1, CLOSED): True, ("near", W1, CLOSED): True, ("world", W1, CLOSED): True})
    assert host_endpoint(lab, "k8s-w1")["status"]["policy"]["realized"]["policy-enabled"] == "none"


def test_cidr_rules_select_node_ips_in_nodes_mode(lab: Lab, pods: dict, cleanup: list) -> None:
    w2, ctr = NODE_IPS["k8s-w2"], NODE_IPS["k8s-ctr"]
    until(lab, {("client", w2, CLOSED): True, ("client", W1, CLOSED): True})
    lab.apply(manifest(NODES_CIDR))
    cleanup.append(NODES_CIDR)
    # With the default mode the CIDR would select no node, and every one of these would be refused.
    until(lab, {("client", w2, CLOSED): True, ("client", ctr, CLOSED): True, ("client", W1, CLOSED): False,
                ("other", W1, CLOSED): True})
    drops = [f for f in flows(lab, "--node", "k8s-ctr", "--verdict", "DROPPED", "--from-pod", "default/client")
             if f.get("IP", {}).get("destination") == W1]
    assert drops and drops[-1]["drop_reason_desc"] == "POLICY_DENIED"
    lab.run("delete", "-f", "-", input=manifest(NODES_CIDR))
    until(lab, {("client", W1, CLOSED): True})


def test_egress_host_policy_filters_what_the_node_sends(lab: Lab, pods: dict, cleanup: list) -> None:
    w2 = NODE_IPS["k8s-w2"]
    until(lab, {("k8s-w1", WORLD, CLOSED): True, ("k8s-w1", w2, CLOSED): True, ("world", W1, NODE_PORT): True})
    lab.apply(manifest(HOST_EGRESS))
    cleanup.append(HOST_EGRESS)
    until(lab, {("k8s-w1", WORLD, OPEN): True, ("k8s-w1", WORLD, CLOSED): False,
                ("k8s-w1", w2, CLOSED): False,       # egress is default-deny now: another node too
                ("near", WORLD, CLOSED): True,       # the node's pods keep their own policy (none)
                ("client", W1, CLOSED): True,        # ingress is not filtered: replies go out by conntrack
                ("world", W1, NODE_PORT): True})     # NodePort via k8s-w1 to k8s-w2's pod: SNATed, not the node's
    assert host_endpoint(lab, "k8s-w1")["status"]["policy"]["realized"]["policy-enabled"] == "egress"

    def denied() -> list[dict[str, Any]] | None:
        got = [f for f in flows(lab, "--from-identity", "1", "--verdict", "DROPPED")
               if f.get("node_name") == "k8s-w1" and f.get("IP", {}).get("destination") == WORLD
               and f.get("l4", {}).get("TCP", {}).get("destination_port") == CLOSED]
        return got or None

    got = lab.wait_for(denied, 15, "the host endpoint's egress drops")
    assert {f["event_type"]["type"] for f in got} >= {1, 5} and got[-1]["source"]["identity"] == 1
    lab.run("delete", "-f", "-", input=manifest(HOST_EGRESS))
    until(lab, {("k8s-w1", WORLD, CLOSED): True, ("k8s-w1", w2, CLOSED): True})
