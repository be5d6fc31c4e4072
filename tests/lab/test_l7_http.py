"""Issue 12, HTTP: the Star Wars demo from Cilium's docs through the L7 proxy, on a 3-node lab.

examples/starwars.yaml (deathstar Deployment on two nodes + Service, tiefighter, xwing) and
examples/starwars-rule1.yaml (``POST /v1/request-landing`` from ``org: empire`` only) as the docs
run them: tiefighter lands (``Ship landed``), its ``PUT /v1/exhaust-port`` gets ``403 Access
denied`` on a connection that stays usable, xwing times out; the three outcomes are in Hubble as L7
(and drop) flows. Both deathstar replicas are hit directly (one on tiefighter's node, one across
the underlay), plus keep-alive, a chunked body, a bad request, and the upstream gone (503).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lab.harness import Lab

pytestmark = pytest.mark.root

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples")
SVC = "http://deathstar.default.svc.cluster.local"


def read(name: str) -> str:
    with open(os.path.join(EXAMPLES, name)) as fh:
        return fh.read()


@pytest.fixture(scope="module")
def demo(lab: Lab) -> Iterator[dict[str, Any]]:
    lab.apply(read("starwars.yaml"))
    lab.run("wait", "--for=condition=Available", "deployment/deathstar", "--timeout=90s", timeout=120)
    pods = lab.wait_pods_ready(["tiefighter", "xwing"])
    stars = {p["metadata"]["name"]: p for p in lab.get_json("pods", "-l", "class=deathstar")}
    pods.update(stars)
    assert lab.exec("tiefighter", "curl", "-s", "-m", "5", "-XPOST", f"{SVC}/v1/request-landing").stdout == \
        "Ship landed\n"
    lab.apply(read("starwars-rule1.yaml"))
    yield pods
    lab.run("delete", "--ignore-not-found", "-f", "-", input=read("starwars-rule1.yaml"), check=False)


def curl(lab: Lab, pod: str, *args: str) -> tuple[int, str]:
    """(curl's exit code, its output); -w appends the status code on its own line."""
    proc = lab.exec(pod, "curl", "-s", "-m", "3", "-w", "\n%{http_code}", *args, check=False)
    return proc.returncode, proc.stdout


def test_rule1_lands_tiefighter_denies_exhaust_port_and_xwing(lab: Lab, demo: dict[str, Any]) -> None:
    def enforced() -> bool:
        return curl(lab, "tiefighter", "-XPUT", f"{SVC}/v1/exhaust-port")[1] == "Access denied\n\n403"

    lab.wait_for(enforced, 20, "rule1 in force")
    assert curl(lab, "tiefighter", "-XPOST", f"{SVC}/v1/request-landing") == (0, "Ship landed\n\n200")
    rc, _out = curl(lab, "xwing", "-XPOST", f"{SVC}/v1/request-landing")
    assert rc == 28  # timed out: dropped at L3/L4, never reaches the proxy
    # Both replicas: one on tiefighter's node (ingress redirect on the same node), one across nodes.
    for name, pod in demo.items():
        if not name.startswith("deathstar"):
            continue
        ip = pod["status"]["podIP"]
        assert curl(lab, "tiefighter", "-XPOST", f"http://{ip}/v1/request-landing") == (0, "Ship landed\n\n200"), name
        assert curl(lab, "tiefighter", "-XPUT", f"http://{ip}/v1/exhaust-port") == (0, "Access denied\n\n403"), name
        # keep-alive: the denied request leaves the connection up for the next one (one connect in all)
        out = lab.exec("tiefighter", "curl", "-s", "-m", "3", "-w", "%{num_connects} ", "-XPOST",
                       f"http://{ip}/v1/request-landing", f"http://{ip}/v1/request-landing").stdout
        assert out == "Ship landed\n1 Ship landed\n0 ", name
        # chunked request body goes through
        assert curl(lab, "tiefighter", "-XPOST", "-H", "Transfer-Encoding: chunked", "--data-binary", "x" * 5000,
                    f"http://{ip}/v1/request-landing") == (0, "Ship landed\n\n200"), name
        # GET /v1 is not in rule1: denied as well
        assert curl(lab, "tiefighter", f"http://{ip}/v1")[1] == "Access denied\n\n403", name


def flows(lab: Lab, *args: str) -> list[dict[str, Any]]:
    out = lab.run("observe", "--last", "500", "-o", "json", *args, timeout=30).stdout
    return [json.loads(line)["flow"] for line in out.splitlines() if line.strip()]


def test_hubble_shows_the_three_outcomes(lab: Lab, demo: dict[str, Any]) -> None:
    curl(lab, "tiefighter", "-XPOST", f"{SVC}/v1/request-landing")
    curl(lab, "tiefighter", "-XPUT", f"{SVC}/v1/exhaust-port")
    curl(lab, "xwing", "-XPOST", f"{SVC}/v1/request-landing")

    def seen() -> tuple[list, list, list]:
        l7 = flows(lab, "--type", "l7", "--protocol", "http")
        landed = [f for f in l7 if f["l7"].get("type") == "RESPONSE" and f["l7"]["http"].get("code") == 200
                  and f["l7"]["http"]["method"] == "POST"]
        denied = [f for f in l7 if f["verdict"] == "DROPPED" and f["l7"]["http"]["method"] == "PUT"]
        xwing = flows(lab, "--from-pod", "default/xwing", "--verdict", "DROPPED", "--to-port", "80")
        return landed, denied, xwing

    landed, denied, xwing = lab.wait_for(lambda: all(seen()) and seen(), 15, "the three outcomes in Hubble")
    d = denied[0]
    assert d["Type"] == "L7" and d["l7"]["type"] == "REQUEST" and d["traffic_direction"] == "INGRESS"
    assert d["source"]["pod_name"] == "tiefighter" and d["destination"]["pod_name"].startswith("deathstar")
    assert d["l7"]["http"]["url"] == "http://deathstar.default.svc.cluster.local/v1/exhaust-port"
    assert d["l7"]["http"]["protocol"] == "HTTP/1.1"
    assert landed[0]["is_reply"] is True and landed[0]["source"]["pod_name"].startswith("deathstar")
    assert xwing[0]["drop_reason_desc"] == "POLICY_DENIED"
    compact = lab.run("observe", "--last", "100", "--type", "l7", "--http-method", "PUT").stdout
    assert ("http-request DROPPED (HTTP/1.1 PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port)"
            in compact)
    status = lab.run("observe", "--last", "100", "--type", "l7", "--http-status", "200",
                     "--http-path", "/v1/request-landing").stdout
    assert "http-response FORWARDED (HTTP/1.1 200 " in status and "PUT" not in status


def test_flow_metrics_count_every_l7_flow(lab: Lab, demo: dict[str, Any]) -> None:
    """L7 flows are counted by key without being built (membrane/hubble/l7lazy.py): N keep-alive
    requests still make exactly 2N forwarded HTTP flows in the deathstar node's flow metric."""
    ds = next(p for n, p in demo.items() if n.startswith("deathstar"))
    node, ip = ds["spec"]["nodeName"], ds["status"]["podIP"]

    def forwarded() -> float:
        out = lab.run("metrics", "list", "--node", node).stdout
        return sum(float(line.split()[-1]) for line in out.splitlines()
                   if line.startswith("hubble_flows_processed_total") and "L7" in line and "HTTP" in line
                   and "FORWARDED" in line)

    before = forwarded()
    n = 7
    out = lab.exec("tiefighter", "curl", "-s", "-m", "5", "-w", "%{num_connects} ", "-XPOST",
                   *[f"http://{ip}/v1/request-landing"] * n).stdout
    assert out.count("Ship landed") == n and out.count("1 ") == 1, out  # one connection, n requests
    lab.wait_for(lambda: forwarded() >= before + 2 * n, 10, "the flow metric to count the L7 flows")
    assert forwarded() == before + 2 * n


def test_proxy_port_status_and_bad_input(lab: Lab, demo: dict[str, Any]) -> None:
    # A replica on tiefighter's node if the scheduler put one there, else any: the table is read on its node.
    stars = sorted((p for n, p in demo.items() if n.startswith("deathstar")),
                   key=lambda p: p["spec"]["nodeName"] != demo["tiefighter"]["spec"]["nodeName"])
    ds = stars[0]
    node = ds["spec"]["nodeName"]
    ep_table = lab.run("bpf", "policy", "get", "--all", "--node", node).stdout
    block = ep_table.split(f"default/{ds['metadata']['name']}")[1].split("\n\n")[0]
    proxied = [line.split() for line in block.splitlines() if " 80/TCP " in line]
    assert proxied and all(row[4].isdigit() and 10000 <= int(row[4]) <= 20000 for row in proxied), block
    assert "redirects active on ports 10000-20000" in lab.run("status").stdout
    # garbage on the HTTP port: a 400 from the proxy, which keeps serving
    ip = ds["status"]["podIP"]
    raw = (f"import socket; s = socket.create_connection(({ip!r}, 80), 3); s.sendall(b'GARBAGE\\r\\n\\r\\n'); "
           "print(s.recv(200).decode())")
    proc = lab.exec("tiefighter", sys.executable, "-c", raw, check=False)
    assert proc.stdout.startswith("HTTP/1.1 400"), proc.stdout
    assert curl(lab, "tiefighter", "-XPOST", f"http://{ip}/v1/request-landing") == (0, "Ship landed\n\n200")
    bad = read("starwars-rule1.yaml").replace('method: "POST"', 'method: "PO(ST"')
    proc = lab.run("apply", "-f", "-", input=bad.replace("name: rule1", "name: bad-rule"), check=False)
    assert proc.returncode != 0 and "rules.http[0].method" in proc.stderr and "regular expression" in proc.stderr
    assert lab.run("get", "cnp", "bad-rule", check=False).returncode != 0


def test_egress_l7_client_side(lab: Lab, demo: dict[str, Any]) -> None:
    """client-egress-l7 style: tiefighter's own rules, enforced by the proxy on its node, towards the
    replica on its node and the one across the underlay (rule1 removed: with both, test_l7_across_nodes.py)."""
    lab.run("delete", "--ignore-not-found", "-f", "-", input=read("starwars-rule1.yaml"))
    lab.apply(read("starwars-egress-l7.yaml"))
    try:
        ips = [p["status"]["podIP"] for n, p in demo.items() if n.startswith("deathstar")]
        lab.wait_for(lambda: curl(lab, "tiefighter", "-XPUT", f"http://{ips[0]}/v1/exhaust-port")[1]
                     == "Access denied\n\n403", 20, "the egress policy in force")
        for ip in ips:
            assert curl(lab, "tiefighter", "-XPUT", f"http://{ip}/v1/exhaust-port") == (0, "Access denied\n\n403"), ip
            assert curl(lab, "tiefighter", "-XPOST", f"http://{ip}/v1/request-landing") == (0, "Ship landed\n\n200"), ip
            rc, out = curl(lab, "tiefighter", f"http://{ip}/v1")
            assert rc == 0 and out.endswith("\n200") and "Death Star" in out, ip
        # xwing has no egress policy: unaffected
        assert "Panic: deathstar exploded" in curl(lab, "xwing", "-XPUT", f"http://{ips[0]}/v1/exhaust-port")[1]
        egress = [f for f in flows(lab, "--type", "l7", "--traffic-direction", "egress", "--http-method", "PUT")
                  if f["verdict"] == "DROPPED"]
        assert egress and egress[0]["source"]["pod_name"] == "tiefighter"
    finally:
        lab.run("delete", "--ignore-not-found", "-f", "-", input=read("starwars-egress-l7.yaml"), check=False)
        lab.apply(read("starwars-rule1.yaml"))


SET_HEADER = """
apiVersion: v1
kind: Secret
metadata: {name: header-token}
stringData: {value: "Bearer from-a-secret"}
---
apiVersion: v1
kind: Pod
metadata:
  name: whoami
  labels: {app: whoami}
spec:
  containers:
    - name: whoami
      image: traefik/whoami
      ports: [{containerPort: 80}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: set-header}
spec:
  endpointSelector:
    matchLabels: {class: xwing}
  egress:
    - toEndpoints: [{matchLabels: {app: whoami}}]
      toPorts:
        - ports: [{port: "80", protocol: TCP}]
          rules:
            http:
              - headerMatches:
                  - name: X-Token
                    secret: {namespace: default, name: header-token}
                    mismatch: REPLACE
"""


def test_header_matches_secret_replaces_the_header(lab: Lab, demo: dict[str, Any]) -> None:
    """client-egress-l7-set-header style: the proxy sets X-Token from a Secret; whoami echoes it."""
    lab.apply(SET_HEADER)
    try:
        ip = lab.wait_pods_ready(["whoami"])["whoami"]["status"]["podIP"]

        def replaced() -> str:
            out = curl(lab, "xwing", "-H", "X-Token: wrong", f"http://{ip}/")[1]
            return out if "X-Token: Bearer from-a-secret" in out else ""

        out = lab.wait_for(replaced, 20, "the header set from the Secret")
        assert "X-Token: wrong" not in out and out.endswith("\n200")
        assert "X-Token: Bearer from-a-secret" in curl(lab, "xwing", f"http://{ip}/")[1]  # missing: set too
    finally:
        lab.run("delete", "--ignore-not-found", "-f", "-", input=SET_HEADER, check=False)
