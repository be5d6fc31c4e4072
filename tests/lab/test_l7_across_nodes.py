"""Issue 12, HTTP across nodes: the Star Wars demo with tiefighter on one node and a deathstar on the
same node and on another, in tunnel routing (VXLAN, two subnets joined by a router that knows no pod
CIDR) and in native routing.

- Ingress L7 (rule1, the destination's rules): across nodes the request reaches the destination
  node's proxy through the overlay and its answers go back through the tunnel (bpf/lib/proxy_tunnel.h).
- Egress L7 (tiefighter's own rules): the proxy's upstream connection leaves the client's node from the
  client's address, in the tunnel with the client's identity.
- Both together: the request passes the egress proxy and then the destination's ingress proxy, on one
  node and across nodes. PUT /v1/exhaust-port is denied by the egress proxy (no ingress flow at all);
  GET /v1 passes the egress proxy and is denied by the ingress proxy, which names tiefighter (its
  identity, not the host's or the remote node's) as the source.

Every request carries an X-Run header of its own so that its Hubble flows are told apart.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lab.harness import Lab, unique_lab

pytestmark = pytest.mark.root

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples")
ROUTED = """
nodes:
  - {name: k8s-ctr, ip: 192.168.10.100/24, podCIDR: 10.244.0.0/24}
  - {name: k8s-w1, ip: 192.168.20.101/24, podCIDR: 10.244.1.0/24}
router: {name: router, ips: [192.168.10.200/24, 192.168.20.200/24]}
settings: {ipam.mode: kubernetes}
"""
PODS = """
apiVersion: v1
kind: Pod
metadata: {name: deathstar-local, labels: {org: empire, class: deathstar}}
spec:
  nodeName: k8s-ctr
  containers: [{name: deathstar, image: quay.io/cilium/starwars:v2.1, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: deathstar-remote, labels: {org: empire, class: deathstar}}
spec:
  nodeName: k8s-w1
  containers: [{name: deathstar, image: quay.io/cilium/starwars:v2.1, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: tiefighter, labels: {org: empire, class: tiefighter}}
spec:
  nodeName: k8s-ctr
  containers: [{name: spaceship, image: nicolaka/netshoot, command: ["sleep", "infinity"]}]
"""
DEATHSTARS = ("deathstar-local", "deathstar-remote")
RESERVED = {1, 2, 4, 6}  # host, world, health, remote-node


def read(name: str) -> str:
    with open(os.path.join(EXAMPLES, name)) as fh:
        return fh.read()


@pytest.fixture(scope="module", params=["tunnel", "native"])
def demo(request: pytest.FixtureRequest, lab_requirements: None,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, dict[str, str]]]:
    lab = Lab(unique_lab())
    try:
        if request.param == "tunnel":
            cfg = tmp_path_factory.mktemp("lab") / "lab.yaml"
            cfg.write_text(ROUTED)
            lab.create("--config", str(cfg), "--set", "routingMode=tunnel")
        else:
            lab.create()
        lab.apply(PODS)
        pods = lab.wait_pods_ready(["tiefighter", *DEATHSTARS], timeout=90)
        yield lab, {name: pods[name]["status"]["podIP"] for name in DEATHSTARS}
    finally:
        lab.delete()
        left = lab.leftovers()
        assert not left, f"lab delete left things behind: {left}"


@pytest.fixture
def policies(demo: tuple[Lab, dict[str, str]]) -> Iterator[list[str]]:
    """The example files a test applied; deleted afterwards."""
    applied: list[str] = []
    yield applied
    for name in applied:
        demo[0].run("delete", "--ignore-not-found", "-f", "-", input=read(name), check=False)


def apply(lab: Lab, applied: list[str], *names: str) -> None:
    for name in names:
        lab.apply(read(name))
        applied.append(name)


def curl(lab: Lab, tag: str, *args: str) -> tuple[int, str]:
    """tiefighter's curl: (exit code, body + status code on its own line), tagged X-Run: tag."""
    proc = lab.exec("tiefighter", "curl", "-s", "-m", "5", "-H", f"X-Run: {tag}", "-w", "\n%{http_code}", *args,
                    check=False)
    return proc.returncode, proc.stdout


def tagged_flows(lab: Lab, tag: str) -> list[dict[str, Any]]:
    out = lab.run("observe", "--last", "1000", "--type", "l7", "--protocol", "http", "-o", "json", timeout=30).stdout
    found = []
    for line in out.splitlines():
        flow = json.loads(line)["flow"] if line.strip() else None
        headers = (flow or {}).get("l7", {}).get("http", {}).get("headers", [])
        if any(h["key"].lower() == "x-run" and h["value"] == tag for h in headers):
            found.append(flow)
    return found


def requests(lab: Lab, tag: str, want: int) -> list[dict[str, Any]]:
    """The REQUEST flows of the tagged request, once ``want`` of them are in Hubble."""
    def got() -> list[dict[str, Any]]:
        reqs = [f for f in tagged_flows(lab, tag) if f["l7"]["type"] == "REQUEST"]
        return reqs if len(reqs) >= want else []

    return lab.wait_for(got, 15, f"{want} L7 request flow(s) tagged {tag}")


def by_direction(flows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {f["traffic_direction"]: f for f in flows}
    assert len(out) == len(flows), flows
    return out


def test_ingress_l7_across_nodes(demo: tuple[Lab, dict[str, str]], policies: list[str]) -> None:
    lab, ips = demo
    apply(lab, policies, "starwars-rule1.yaml")
    remote = ips["deathstar-remote"]
    lab.wait_for(lambda: curl(lab, "wait", "-XPUT", f"http://{remote}/v1/exhaust-port")[1] == "Access denied\n\n403",
                 20, "rule1 in force across nodes")
    for name, ip in ips.items():
        assert curl(lab, "x", "-XPOST", f"http://{ip}/v1/request-landing") == (0, "Ship landed\n\n200"), name
        # keep-alive through a denial: one connection for both requests
        fmt = " %{http_code} %{num_connects}\n"
        out = lab.exec("tiefighter", "curl", "-s", "-m", "5", "-w", fmt, "-XPUT", f"http://{ip}/v1/exhaust-port",
                       "--next", "-s", "-m", "5", "-w", fmt, "-XPOST", f"http://{ip}/v1/request-landing").stdout
        assert out == "Access denied\n 403 1\nShip landed\n 200 0\n", (name, out)
        body = "x" * 20000  # several segments of the pods' MTU (1450 in tunnel routing)
        assert curl(lab, "x", "-XPOST", "--data-binary", body, f"http://{ip}/v1/request-landing") == \
            (0, "Ship landed\n\n200"), name
    tag = secrets.token_hex(4)
    assert curl(lab, tag, "-XPUT", f"http://{remote}/v1/exhaust-port") == (0, "Access denied\n\n403")
    (flow,) = requests(lab, tag, 1)
    assert (flow["verdict"], flow["traffic_direction"], flow["node_name"]) == ("DROPPED", "INGRESS", "k8s-w1")
    assert flow["source"]["pod_name"] == "tiefighter" and flow["source"]["identity"] not in RESERVED
    assert flow["destination"]["pod_name"] == "deathstar-remote"


def test_egress_l7_across_nodes(demo: tuple[Lab, dict[str, str]], policies: list[str]) -> None:
    lab, ips = demo
    apply(lab, policies, "starwars-egress-l7.yaml")
    remote = ips["deathstar-remote"]
    lab.wait_for(lambda: curl(lab, "wait", "-XPUT", f"http://{remote}/v1/exhaust-port")[1] == "Access denied\n\n403",
                 20, "the egress rules in force")
    for name, ip in ips.items():
        assert curl(lab, "x", "-XPOST", f"http://{ip}/v1/request-landing") == (0, "Ship landed\n\n200"), name
        rc, out = curl(lab, "x", f"http://{ip}/v1")
        assert rc == 0 and out.endswith("\n200") and f'"hostname": "{name}"' in out, (name, out)
    tag = secrets.token_hex(4)
    assert curl(lab, tag, "-XPUT", f"http://{remote}/v1/exhaust-port") == (0, "Access denied\n\n403")
    (flow,) = requests(lab, tag, 1)
    assert (flow["verdict"], flow["traffic_direction"], flow["node_name"]) == ("DROPPED", "EGRESS", "k8s-ctr")
    assert flow["source"]["pod_name"] == "tiefighter" and flow["destination"]["pod_name"] == "deathstar-remote"


def test_egress_and_ingress_proxies_both_apply(demo: tuple[Lab, dict[str, str]], policies: list[str]) -> None:
    lab, ips = demo
    apply(lab, policies, "starwars-egress-l7.yaml", "starwars-rule1.yaml")

    def both_in_force() -> bool:  # GET /v1: the egress rules allow it, rule1 does not
        return all(curl(lab, "wait", f"http://{ip}/v1")[1] == "Access denied\n\n403" for ip in ips.values())

    lab.wait_for(both_in_force, 20, "both policies in force")
    for name, ip in ips.items():
        node = "k8s-ctr" if name == "deathstar-local" else "k8s-w1"
        # allowed by both: each proxy forwards it
        tag = secrets.token_hex(4)
        assert curl(lab, tag, "-XPOST", f"http://{ip}/v1/request-landing") == (0, "Ship landed\n\n200"), name
        flows = by_direction(requests(lab, tag, 2))
        assert {d: f["verdict"] for d, f in flows.items()} == {"EGRESS": "FORWARDED", "INGRESS": "FORWARDED"}
        assert flows["INGRESS"]["node_name"] == node and flows["EGRESS"]["node_name"] == "k8s-ctr"
        # denied by the egress proxy: it answers 403, the ingress proxy never sees the request
        tag = secrets.token_hex(4)
        assert curl(lab, tag, "-XPUT", f"http://{ip}/v1/exhaust-port") == (0, "Access denied\n\n403"), name
        (flow,) = requests(lab, tag, 1)
        assert (flow["traffic_direction"], flow["verdict"]) == ("EGRESS", "DROPPED"), name
        # allowed by the egress proxy, denied by the ingress proxy, which sees tiefighter as the source
        tag = secrets.token_hex(4)
        assert curl(lab, tag, f"http://{ip}/v1") == (0, "Access denied\n\n403"), name
        flows = by_direction(requests(lab, tag, 2))
        assert {d: f["verdict"] for d, f in flows.items()} == {"EGRESS": "FORWARDED", "INGRESS": "DROPPED"}, name
        ingress, egress = flows["INGRESS"], flows["EGRESS"]
        assert ingress["node_name"] == node and ingress["source"]["pod_name"] == "tiefighter"
        assert ingress["source"]["identity"] == egress["source"]["identity"] not in RESERVED
        assert ingress["destination"]["pod_name"] == name

        def egress_response(tag: str = tag) -> list[int]:  # the egress proxy relays the ingress proxy's 403
            return [f["l7"]["http"]["code"] for f in tagged_flows(lab, tag)
                    if f["l7"]["type"] == "RESPONSE" and f["traffic_direction"] == "EGRESS"]

        assert lab.wait_for(egress_response, 15, "the egress proxy's response flow") == [403], name
