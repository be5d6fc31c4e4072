"""toFQDNs and the DNS proxy end to end on a lab: a pod whose egress allows DNS through the proxy and
``toFQDNs: one.one.one.one`` reaches one.one.one.one (the lab's world) and not ipinfo.io; a name its DNS
rules do not allow gets REFUSED; the first connection right after a resolution is never dropped;
``membrane fqdn cache list`` and Hubble show what happened."""

from __future__ import annotations

import json

import pytest

from tests.lab.harness import Lab

PODS = """
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  nodeName: k8s-w1
  containers: [{name: c, image: curlimages/curl}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, protocol: TCP}]
"""

POLICY = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: to-one}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
    - toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns}}]
      toPorts:
        - ports: [{port: "53", protocol: ANY}]
          rules:
            dns: [{matchName: one.one.one.one}, {matchPattern: "*.*.svc.cluster.local"}]
    - toFQDNs: [{matchName: one.one.one.one}]
      toPorts: [{ports: [{port: "80", protocol: TCP}]}]
"""


@pytest.fixture(scope="module")
def client(lab: Lab) -> dict:
    lab.apply(PODS)
    pods = lab.wait_pods_ready(["client"])
    lab.apply(POLICY)
    lab.wait_for(lambda: _nslookup(lab, "one.one.one.one.") == "203.0.113.11", 20,
                 "the DNS proxy to answer for one.one.one.one")
    return pods["client"]


def _nslookup(lab: Lab, name: str) -> str:
    out = lab.exec("client", "nslookup", "-timeout=2", "-retry=1", name, check=False)
    lines = [ln.split(":", 1)[1].strip() for ln in out.stdout.splitlines() if ln.startswith("Address:")]
    if "REFUSED" in out.stdout + out.stderr:
        return "REFUSED"
    return lines[-1] if len(lines) > 1 else out.stdout + out.stderr


def _curl(lab: Lab, url: str, max_time: str = "3") -> str:
    out = lab.exec("client", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", max_time, url,
                   check=False)
    return out.stdout.strip()


def test_allowed_name_resolves_and_its_ips_are_reachable(lab: Lab, client: dict) -> None:
    assert _curl(lab, "http://one.one.one.one./") == "200"
    rows = json.loads(lab.run("fqdn", "cache", "list", "--node", "k8s-w1", "-o", "json").stdout)
    assert any(r["fqdn"] == "one.one.one.one." and "203.0.113.11" in r["ips"] for r in rows), rows
    ipcache = lab.run("bpf", "ipcache", "list", "--node", "k8s-w1").stdout
    assert "203.0.113.11/32" in ipcache


def test_a_name_the_dns_rules_do_not_allow_is_refused(lab: Lab, client: dict) -> None:
    assert _nslookup(lab, "ipinfo.io.") == "REFUSED"


def test_a_service_name_resolves_through_the_search_list(lab: Lab, client: dict) -> None:
    cluster_ip = json.loads(lab.run("get", "svc", "web", "-o", "json").stdout)["spec"]["clusterIP"]
    # "web" -> web.default.svc.cluster.local (the pod's first search domain), allowed by *.*.svc.cluster.local
    assert _nslookup(lab, "web") == cluster_ip


def test_an_ip_no_tofqdns_selector_selects_stays_unreachable(lab: Lab, client: dict) -> None:
    assert _curl(lab, "http://203.0.113.12/", "2") == "000"  # ipinfo.io's address: world, not allowed


def test_the_first_connection_after_each_resolution_is_never_dropped(lab: Lab, client: dict) -> None:
    # each round starts with the name forgotten (its identity, ipcache and map entries gone), so curl's
    # own lookup goes through the proxy and its first SYN needs what the answer installed
    codes, cleaned = [], []
    for _ in range(50):
        out = lab.run("fqdn", "cache", "clean", "--node", "k8s-w1").stdout
        cleaned.append(int(out.split()[1]))
        codes.append(_curl(lab, "http://one.one.one.one./", "2"))
    assert codes == ["200"] * 50, codes
    assert min(cleaned[1:]) >= 1, cleaned  # every round had learned the name again: its lookup went through the proxy


def test_hubble_shows_the_dns_records(lab: Lab, client: dict) -> None:
    _nslookup(lab, "ipinfo.io.")
    out = lab.run("observe", "--node", "k8s-w1", "--protocol", "dns", "--last", "200", "-o", "json").stdout
    flows = [json.loads(line) for line in out.splitlines() if line.strip()]
    dns = [f.get("flow", f).get("l7", {}).get("dns", {}) for f in flows]
    assert any(d.get("query") == "ipinfo.io." for d in dns), out[-2000:]
    assert any(d.get("query") == "one.one.one.one." and "203.0.113.11" in d.get("ips", []) for d in dns)
    compact = lab.run("observe", "--node", "k8s-w1", "--protocol", "dns", "--last", "200").stdout
    assert "dns-request proxy DROPPED" in compact and "ipinfo.io." in compact, compact[-2000:]
