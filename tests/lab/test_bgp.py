"""BGP control plane v2 against a real FRR router: the seeds' BGP lab (``lab create --topology seed-bgp``).

k8s-ctr and k8s-w1 on 192.168.10.0/24, k8s-w0 on 192.168.20.0/24, FRR (ASN 65000) in the router
namespace; each node's agent runs ExaBGP (ASN 65001) peering with the router address on its subnet
(examples/bgp.yaml). Everything the router knows about pod CIDRs and Service IPs comes from BGP: the lab
kubelet writes no routes into it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.conftest import make_lab
from tests.lab.harness import Lab

EXAMPLE = (Path(__file__).resolve().parents[2] / "examples" / "bgp.yaml").read_text()
NODE_IPS = {"k8s-ctr": "192.168.10.100", "k8s-w1": "192.168.10.101", "k8s-w0": "192.168.20.100"}
POD_CIDRS = {"10.244.0.0/24": "192.168.10.100", "10.244.1.0/24": "192.168.10.101", "10.244.2.0/24": "192.168.20.100"}
WORKLOAD = """
apiVersion: cilium.io/v2
kind: CiliumLoadBalancerIPPool
metadata: {name: bgp-pool}
spec:
  blocks: [{cidr: 172.16.1.0/24}]
""" + "".join(f"""---
apiVersion: v1
kind: Pod
metadata: {{name: web-{node}, labels: {{app: web}}}}
spec:
  nodeName: {node}
  containers: [{{name: web, image: traefik/whoami, ports: [{{containerPort: 80}}]}}]
""" for node in NODE_IPS) + """---
apiVersion: v1
kind: Pod
metadata: {name: client-w0}
spec:
  nodeName: k8s-w0
  containers: [{name: c, image: nicolaka/netshoot, command: ["sleep", "infinity"]}]
"""
SERVICE = """
apiVersion: v1
kind: Service
metadata: {{name: web, labels: {{bgp: "on"}}}}
spec:
  type: LoadBalancer
  externalTrafficPolicy: {etp}
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 80}}]
"""


@pytest.fixture(scope="module")
def bgp_lab(lab_requirements: None) -> Iterator[Lab]:
    for lab in make_lab("--topology", "seed-bgp"):
        lab.apply(EXAMPLE)
        lab.apply(WORKLOAD)
        lab.wait_pods_ready([f"web-{n}" for n in NODE_IPS] + ["client-w0"], timeout=120)
        yield lab


def router_routes(lab: Lab) -> dict[str, set[str]]:
    """Destination -> next hops in the router's kernel table (only what zebra installed from BGP)."""
    out = subprocess.run(["ip", "-n", lab.paths.router_netns("router"), "-j", "route", "show", "proto", "bgp"],
                         capture_output=True, text=True, check=True).stdout
    routes: dict[str, set[str]] = {}
    for r in json.loads(out or "[]"):
        hops = {h["gateway"] for h in r.get("nexthops") or []} or {r.get("gateway")}
        dst = r["dst"] if "/" in r["dst"] else f"{r['dst']}/32"
        routes[dst] = {h for h in hops if h}
    return routes


def lb_ip(lab: Lab) -> str:
    return lb_ip_of(lab, "web")


def test_sessions_up_and_router_learns_every_pod_cidr(bgp_lab: Lab) -> None:
    peers = bgp_lab.wait_for(
        lambda: [r for r in json.loads(bgp_lab.run("bgp", "peers", "-o", "json").stdout) if r["state"] == "established"]
        if len(json.loads(bgp_lab.run("bgp", "peers", "-o", "json").stdout)) == 3 else [], 30, "3 sessions")
    assert len(peers) == 3, peers
    assert {p["peer-address"] for p in peers} == {"192.168.10.200", "192.168.20.200"}
    table = bgp_lab.run("bgp", "peers").stdout
    assert table.splitlines()[0].split()[:4] == ["Node", "Local", "AS", "Peer"] and "established" in table
    routes = bgp_lab.wait_for(lambda: router_routes(bgp_lab) if all(c in router_routes(bgp_lab) for c in POD_CIDRS)
                              else None, 30, "pod CIDRs in the router")
    for cidr, node_ip in POD_CIDRS.items():
        assert routes[cidr] == {node_ip}
    # Nothing else put them there: the router holds no static pod routes.
    static = subprocess.run(["ip", "-n", bgp_lab.paths.router_netns("router"), "route", "show", "proto", "static"],
                            capture_output=True, text=True, check=True).stdout
    assert "10.244." not in static
    shown = bgp_lab.node_exec("router", "vtysh", "-c", "show ip bgp").stdout
    assert all(c in shown for c in POD_CIDRS) and "65001 i" in shown
    nodecfg = bgp_lab.get_json("ciliumbgpnodeconfigs", "k8s-w0")[0]
    peer = nodecfg["status"]["bgpInstances"][0]["peers"][0]
    assert peer["peeringState"] == "established" and peer["peerAddress"] == "192.168.20.200"
    assert peer["timers"]["appliedHoldTimeSeconds"] == 9


def test_pods_across_subnets_use_bgp_routes(bgp_lab: Lab) -> None:
    ip = bgp_lab.pod("web-k8s-ctr")["status"]["podIP"]
    out = bgp_lab.exec("client-w0", "curl", "-s", "-m", "5", f"http://{ip}/").stdout
    assert "Hostname: web-k8s-ctr" in out


def test_service_ecmp_local_policy_world_and_withdrawal(bgp_lab: Lab) -> None:
    bgp_lab.apply(SERVICE.format(etp="Cluster"))
    vip = f"{lb_ip(bgp_lab)}/32"
    hops = bgp_lab.wait_for(lambda: router_routes(bgp_lab).get(vip) if len(router_routes(bgp_lab).get(vip, ())) == 3
                            else None, 20, f"3 ECMP paths for {vip}")
    assert hops == set(NODE_IPS.values())
    detail = bgp_lab.node_exec("router", "vtysh", "-c", f"show ip bgp {vip}").stdout
    assert "Community: 65000:100" in detail and "multipath" in detail  # the advertisement's attributes, via BGP
    assert "ipv4/unicast" in bgp_lab.run("bgp", "peers").stdout
    advertised = bgp_lab.run("bgp", "routes", "advertised", "ipv4", "unicast").stdout
    assert sum(vip in line for line in advertised.splitlines()) == 3
    available = bgp_lab.run("bgp", "routes", "available", "ipv4", "unicast", "--node", "k8s-w0").stdout
    assert available.splitlines()[0].split() == ["Node", "VRouter", "Prefix", "NextHop", "Age", "Attrs"]
    assert vip in available and "10.244.2.0/24" in available

    # The world reaches the Service through the router, which knows the address only from BGP.
    seen = set()
    for _ in range(12):
        out = bgp_lab.node_exec("world", "curl", "-s", "-m", "5", f"http://{vip.split('/')[0]}/").stdout
        seen |= {line.split()[1] for line in out.splitlines() if line.startswith("Hostname:")}
    assert seen and seen <= {f"web-{n}" for n in NODE_IPS}

    # externalTrafficPolicy: Local, and no backend on k8s-w1 any more: only the backend nodes announce.
    bgp_lab.run("delete", "pod", "web-k8s-w1", "--now")
    bgp_lab.apply(SERVICE.format(etp="Local"))
    want = {NODE_IPS["k8s-ctr"], NODE_IPS["k8s-w0"]}
    bgp_lab.wait_for(lambda: router_routes(bgp_lab).get(vip) == want, 20, f"{vip} only via {want}")

    # Delete the Service: every node withdraws it.
    start = time.monotonic()
    bgp_lab.run("delete", "svc", "web")
    while vip in router_routes(bgp_lab):
        assert time.monotonic() - start < 10, f"{vip} still in the router 10 s after the delete"
        time.sleep(0.05)
    elapsed = time.monotonic() - start
    print(f"BGP withdrawal after Service delete: {elapsed:.2f}s")
    assert elapsed < 5


def test_dead_speaker_is_restarted_and_reported(bgp_lab: Lab) -> None:
    before = bgp_lab.agent_status("k8s-w1")["bgp"]["speaker"]
    assert before["running"] and before["pid"]
    os.kill(before["pid"], signal.SIGKILL)  # the speaker this lab's agent started
    status = bgp_lab.wait_for(lambda: (s := bgp_lab.agent_status("k8s-w1").get("bgp", {}))["speaker"]["restarts"] >= 1
                              and s["speaker"]["running"] and s, 20, "the speaker restarted")
    assert status["speaker"]["pid"] != before["pid"]
    assert "restarted 1 times" in status["msg"] and status["state"] == "Ok"
    assert "killed" in status["speaker"]["last-exit"] or "-9" in status["speaker"]["last-exit"]
    # The restarted speaker peers again and re-announces the node's pod CIDR.
    bgp_lab.wait_for(lambda: router_routes(bgp_lab).get("10.244.1.0/24") == {NODE_IPS["k8s-w1"]}, 30,
                     "k8s-w1's pod CIDR back in the router")
    cluster = bgp_lab.run("status").stdout  # exit 0: the speaker recovered; the restart is a warning
    assert "Warnings:" in cluster and "k8s-w1" in cluster and "BGP speaker restarted 1 times" in cluster
    page = bgp_lab.run("status", "--node", "k8s-w1").stdout
    assert "BGP Control Plane:" in page and "1/1 peers established" in page


def test_bad_bgp_input_is_refused_and_nothing_stored(bgp_lab: Lab) -> None:
    bad_asn = """
apiVersion: cilium.io/v2
kind: CiliumBGPClusterConfig
metadata: {name: bad-asn}
spec:
  bgpInstances: [{name: i, localASN: 4294967296, peers: [{name: p, peerAddress: 192.168.10.200}]}]
"""
    bad_type = """
apiVersion: cilium.io/v2
kind: CiliumBGPAdvertisement
metadata: {name: bad-type}
spec:
  advertisements: [{advertisementType: Routes}]
"""
    for manifest, field in ((bad_asn, "localASN"), (bad_type, "advertisementType")):
        proc = bgp_lab.run("apply", "-f", "-", input=manifest, check=False)
        assert proc.returncode != 0 and field in proc.stderr, proc.stderr
    assert not [o for o in bgp_lab.get_json("ciliumbgpclusterconfigs") if o["metadata"]["name"] == "bad-asn"]
    assert not [o for o in bgp_lab.get_json("ciliumbgpadvertisements") if o["metadata"]["name"] == "bad-type"]


def _speakers(lab: Lab, node: str) -> list[int]:
    conf = f"{lab.paths.node_state_dir(node)}/bgp/exabgp.conf".encode()
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if entry.isdigit() and conf in argv and any(a.endswith(b"exabgp") for a in argv):
            found.append(int(entry))
    return found


def test_killed_agent_leaves_no_second_speaker(bgp_lab: Lab) -> None:
    from membrane.lab.daemons import daemon_state

    [old] = _speakers(bgp_lab, "k8s-ctr")
    state = daemon_state(bgp_lab.name, "agent-k8s-ctr")
    assert state is not None and state.record is not None
    os.kill(state.record.pid, signal.SIGKILL)  # the agent this lab's supervisor runs; it restarts it
    bgp_lab.wait_for(lambda: (s := _speakers(bgp_lab, "k8s-ctr")) and old not in s, 60, "a new speaker on k8s-ctr")
    time.sleep(2)
    assert len(_speakers(bgp_lab, "k8s-ctr")) == 1  # the orphan was stopped, not doubled
    bgp_lab.wait_for(lambda: router_routes(bgp_lab).get("10.244.0.0/24") == {NODE_IPS["k8s-ctr"]}, 30,
                     "k8s-ctr's pod CIDR in the router after the agent restart")


def test_node_override_sets_router_id_and_listening_port(bgp_lab: Lab) -> None:
    bgp_lab.apply("""
apiVersion: cilium.io/v2
kind: CiliumBGPNodeConfigOverride
metadata: {name: k8s-w0}
spec:
  bgpInstances: [{name: instance-65001, routerID: 10.10.10.10, localPort: 1790}]
""")

    def remote_id() -> str:
        out = bgp_lab.node_exec("router", "vtysh", "-c", "show ip bgp neighbors 192.168.20.100 json").stdout
        peer = json.loads(out).get("192.168.20.100") or {}
        return str(peer.get("remoteRouterId")) if peer.get("bgpState") == "Established" else ""

    assert bgp_lab.wait_for(lambda: remote_id() == "10.10.10.10", 40, "k8s-w0's session with router ID 10.10.10.10")
    listening = bgp_lab.node_exec("k8s-w0", "ss", "-Hltn").stdout
    assert "192.168.20.100:1790" in listening, listening
    spec = bgp_lab.get_json("ciliumbgpnodeconfigs", "k8s-w0")[0]["spec"]["bgpInstances"][0]
    assert (spec["routerID"], spec["localPort"]) == ("10.10.10.10", 1790)
    bgp_lab.wait_for(lambda: router_routes(bgp_lab).get("10.244.2.0/24") == {NODE_IPS["k8s-w0"]}, 30,
                     "k8s-w0's pod CIDR after its speaker took the override")


def test_cluster_ip_follows_internal_policy_and_external_ip_every_node(bgp_lab: Lab) -> None:
    bgp_lab.apply("""
apiVersion: cilium.io/v2
kind: CiliumBGPAdvertisement
metadata: {name: cluster-ips, labels: {advertise: bgp}}
spec:
  advertisements:
    - advertisementType: Service
      service: {addresses: [ClusterIP, ExternalIP]}
      selector: {matchLabels: {bgp-cip: "on"}}
---
apiVersion: v1
kind: Service
metadata: {name: web-cip, labels: {bgp-cip: "on"}}
spec:
  internalTrafficPolicy: Local
  externalIPs: [172.16.9.9]
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
""")
    cip = f"{bgp_lab.get_json('svc', 'web-cip')[0]['spec']['clusterIP']}/32"
    backends = {NODE_IPS[p["spec"]["nodeName"]] for p in bgp_lab.get_json("pods", "-l", "app=web")}
    assert backends and backends != set(NODE_IPS.values())  # web-k8s-w1 was deleted above
    routes = bgp_lab.wait_for(lambda: (r := router_routes(bgp_lab)).get(cip) == backends
                              and r.get("172.16.9.9/32") == set(NODE_IPS.values()) and r, 20,
                              f"{cip} via {backends} (iTP Local) and the external IP via every node")
    assert routes[cip] == backends
    bgp_lab.run("delete", "svc", "web-cip")
    bgp_lab.wait_for(lambda: cip not in router_routes(bgp_lab) and "172.16.9.9/32" not in router_routes(bgp_lab), 10,
                     "both withdrawn")


def test_router_restart_learns_every_route_again(bgp_lab: Lab) -> None:
    bgp_lab.run("lab", "restart", "frr-bgpd")
    routes = bgp_lab.wait_for(lambda: (r := router_routes(bgp_lab)) and all(c in r for c in POD_CIDRS) and r, 60,
                              "pod CIDRs re-learnt after bgpd restarted")
    for cidr, node_ip in POD_CIDRS.items():
        assert routes[cidr] == {node_ip}


def test_withdrawal_time_median_of_five(bgp_lab: Lab) -> None:
    """Apply a LoadBalancer Service, wait for its route, delete it, time until the router's kernel drops it."""
    import statistics

    announce, withdraw = [], []
    for i in range(5):
        start = time.monotonic()
        bgp_lab.apply(SERVICE.format(etp="Cluster").replace("name: web,", f"name: web-m{i},"))
        vip = f"{lb_ip_of(bgp_lab, f'web-m{i}')}/32"
        bgp_lab.wait_for(lambda v=vip: v in router_routes(bgp_lab), 20, f"{vip} announced")
        announce.append(time.monotonic() - start)
        start = time.monotonic()
        bgp_lab.run("delete", "svc", f"web-m{i}")
        while vip in router_routes(bgp_lab):
            assert time.monotonic() - start < 10, f"{vip} still in the router 10 s after the delete"
            time.sleep(0.05)
        withdraw.append(time.monotonic() - start)
    print(f"BGP announce (apply -> router route), median of 5: {statistics.median(announce):.2f}s "
          f"({min(announce):.2f}-{max(announce):.2f}); withdrawal (delete -> gone), median of 5: "
          f"{statistics.median(withdraw):.2f}s ({min(withdraw):.2f}-{max(withdraw):.2f}); hold time 9 s")
    assert statistics.median(withdraw) < 5


def lb_ip_of(lab: Lab, name: str) -> str:
    def ip() -> str:
        ingress = ((lab.get_json("svc", name)[0].get("status") or {}).get("loadBalancer") or {}).get("ingress")
        return str(ingress[0]["ip"]) if ingress else ""
    return str(lab.wait_for(ip, 30, f"an LB-IPAM address for {name}"))


def test_removing_the_cluster_configs_stops_every_speaker(bgp_lab: Lab) -> None:
    """Runs last: BGP off for every node leaves no speaker, no CiliumBGPNodeConfig and no BGP route."""
    bgp_lab.run("delete", "ciliumbgpclusterconfigs", "cilium-bgp-10", "cilium-bgp-20")
    bgp_lab.wait_for(lambda: not any(_speakers(bgp_lab, n) for n in NODE_IPS), 20, "every speaker stopped")
    bgp_lab.wait_for(lambda: not bgp_lab.get_json("ciliumbgpnodeconfigs"), 20, "CiliumBGPNodeConfigs deleted")
    bgp_lab.wait_for(lambda: not router_routes(bgp_lab), 30, "no BGP route left in the router")
    assert json.loads(bgp_lab.run("bgp", "peers", "-o", "json").stdout) == []
    assert bgp_lab.agent_status("k8s-ctr")["bgp"]["state"] == "Ok"
