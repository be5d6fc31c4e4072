"""Issue 13: LB-IPAM gives a LoadBalancer Service a pool address, L2 announcements make one node answer
ARP for it, and the world reaches the backends with no route added by hand; when the holder's agent dies
another node takes over (measured against Cilium's default 15 s / 5 s / 2 s timers). Bad input is
refused or reported. About 2 minutes with lab create.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from membrane.lab.daemons import daemon_state
from membrane.lab.processes import is_alive
from membrane.lab.record import load_record
from tests.lab.conftest import make_lab
from tests.lab.harness import MEMBRANE, Lab

POOL_FIRST = "192.168.10.240"  # on the world's and the nodes' subnet: reached by ARP, no route
WORKERS = ("k8s-w1", "k8s-w2")

APP = """
apiVersion: cilium.io/v2alpha1
kind: CiliumLoadBalancerIPPool
metadata: {name: lab-pool}
spec:
  blocks: [{start: 192.168.10.240, stop: 192.168.10.247}]
---
apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata: {name: workers}
spec:
  serviceSelector: {matchLabels: {color: blue}}
  nodeSelector:
    matchExpressions: [{key: node-role.kubernetes.io/control-plane, operator: DoesNotExist}]
  interfaces: ["^eth[0-9]+"]
  loadBalancerIPs: true
  externalIPs: true
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, labels: {app: web}}
spec:
  nodeName: k8s-w1
  containers: [{name: web, image: traefik/whoami}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, labels: {app: web}}
spec:
  nodeName: k8s-w2
  containers: [{name: web, image: traefik/whoami}]
---
apiVersion: v1
kind: Service
metadata: {name: web, labels: {color: blue}}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80}]
"""

# Prints the time and sender MAC of the first gratuitous ARP for argv[1] seen on eth0, then exits.
GARP_WATCH = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806)); s.bind(("eth0", 0x0806))
ip = socket.inet_aton(sys.argv[1]); print("ready", flush=True); end = time.time() + float(sys.argv[2])
s.settimeout(1.0)
while time.time() < end:
    try: f = s.recv(64)
    except socket.timeout: continue
    if f[20:22] == b"\x00\x01" and f[28:32] == ip and f[38:42] == ip:
        print(time.time(), f[22:28].hex(":"), flush=True); break
"""


@pytest.fixture(scope="module")
def lab(lab_requirements: None) -> Iterator[Lab]:
    yield from make_lab("--set", "l2announcements.enabled=true")


@pytest.fixture(scope="module")
def app(lab: Lab) -> str:
    lab.apply(APP)
    lab.wait_pods_ready(["web-1", "web-2"])
    return lab.wait_for(lambda: _ingress(lab, "web"), 30, "an address from lab-pool")


def _ingress(lab: Lab, name: str) -> str:
    svc = lab.get_json("svc", name)[0]
    ips = [i["ip"] for i in svc.get("status", {}).get("loadBalancer", {}).get("ingress", [])]
    return ips[0] if ips else ""


def _holder(lab: Lab) -> str:
    leases = lab.get_json("leases", "-n", "kube-system")
    return next((le["spec"]["holderIdentity"] for le in leases
                 if le["metadata"]["name"] == "cilium-l2announce-default-web"), "")


def _mac(lab: Lab, node: str) -> str:
    out = lab.node_exec(node, "ip", "-br", "link", "show", "eth1").stdout
    return out.split()[2].lower()


def _arping(lab: Lab, ip: str, count: int = 3) -> list[str]:
    out = lab.run("lab", "exec", "world", "--", "arping", "-c", str(count), "-w", str(count + 1), "-I", "eth0", ip,
                  check=False).stdout
    return sorted({m.lower() for m in re.findall(r"\[([0-9A-Fa-f:]{17})\]", out)})


def _curl(lab: Lab, ip: str, timeout: float = 3) -> str:
    return lab.run("lab", "exec", "world", "--", "curl", "-s", "--max-time", str(timeout), f"http://{ip}/",
                   check=False).stdout


def test_pool_address_reaches_backends_through_the_one_announcing_node(lab: Lab, app: str) -> None:
    assert app == POOL_FIRST
    pools = lab.run("get", "ippools").stdout.splitlines()
    assert pools[0].split() == ["NAME", "DISABLED", "CONFLICTING", "IPS", "AVAILABLE", "AGE"]
    assert pools[1].split()[:4] == ["lab-pool", "false", "False", "7"]
    holder = lab.wait_for(lambda: _holder(lab), 30, "a node to hold the web lease")
    assert holder in WORKERS
    leases = lab.run("get", "leases", "-n", "kube-system").stdout
    assert re.search(rf"cilium-l2announce-default-web\s+{holder}\s", leases), leases
    # No route by hand: the world reaches the address on its own link.
    route = lab.run("lab", "exec", "world", "--", "ip", "route", "get", app).stdout
    assert "via" not in route and "dev eth0" in route, route
    body = lab.wait_for(lambda: _curl(lab, app), 20, "curl from the world")
    assert body.startswith("Hostname: web-")
    assert _arping(lab, app) == [_mac(lab, holder)]  # exactly one node answers, the lease holder
    l2 = lab.run("bpf", "l2", "list").stdout
    rows = [line.split() for line in l2.splitlines()[1:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [(holder, app, "eth1")], l2
    svc = lab.get_json("svc", "web")[0]
    cond = next(c for c in svc["status"]["conditions"] if c["type"] == "cilium.io/IPAMRequestSatisfied")
    assert (cond["status"], cond["reason"]) == ("True", "satisfied")


def test_external_ips_are_announced_too(lab: Lab, app: str) -> None:
    lab.apply("""
apiVersion: v1
kind: Service
metadata: {name: web-ext, labels: {color: blue}}
spec: {selector: {app: web}, ports: [{port: 80}], externalIPs: [192.168.10.250]}
""")
    try:
        lab.wait_for(lambda: _curl(lab, "192.168.10.250").startswith("Hostname: web-"), 30, "curl to the external IP")
        leases = {le["metadata"]["name"]: le["spec"]["holderIdentity"] for le in lab.get_json("leases", "-n", "kube-system")}
        holder = leases["cilium-l2announce-default-web-ext"]
        assert _arping(lab, "192.168.10.250") == [_mac(lab, holder)]
    finally:
        lab.run("delete", "svc", "web-ext", check=False)
    lab.wait_for(lambda: "cilium-l2announce-default-web-ext" not in lab.run("get", "leases", "-n", "kube-system").stdout,
                 15, "the deleted Service's lease to be released")


def test_seed_manifest_applies_unchanged(lab: Lab, app: str) -> None:
    """The seeds' l2-lbipam.yaml (pool 10.10.200.0/29, allowFirstLastIPs No): svc1-3 get .1-.3."""
    seed = os.path.join(os.path.dirname(__file__), "..", "unit", "fixtures", "model", "l2-lbipam.yaml")
    lab.run("apply", "-f", seed)
    try:
        got = lab.wait_for(lambda: all(_ingress(lab, f"svc{i}") for i in (1, 2, 3)) and
                           [_ingress(lab, f"svc{i}") for i in (1, 2, 3)], 30, "svc1-3 addresses")
        assert got == ["10.10.200.1", "10.10.200.2", "10.10.200.3"]
        table = lab.run("get", "svc").stdout
        assert re.search(r"svc1\s+LoadBalancer\s+\S+\s+10\.10\.200\.1\s", table), table
        rows = {r.split()[0]: r.split() for r in lab.run("get", "ippools").stdout.splitlines()[1:]}
        assert rows["cilium-pool"][1:4] == ["false", "False", "3"]
    finally:
        lab.run("delete", "-f", seed, check=False)


def test_bad_input_is_refused_or_reported(lab: Lab, app: str) -> None:
    bad_regex = lab.run("apply", "-f", "-", check=False, input="""
apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata: {name: broken}
spec: {interfaces: ["^eth[0-9"], loadBalancerIPs: true}
""")
    assert bad_regex.returncode != 0
    assert 'spec.interfaces[0]: Invalid value: "^eth[0-9": not a valid regular expression' in bad_regex.stderr
    assert lab.run("get", "ciliuml2announcementpolicies").stdout.count("broken") == 0
    lab.apply("""
apiVersion: cilium.io/v2
kind: CiliumLoadBalancerIPPool
metadata: {name: overlapping}
spec: {blocks: [{cidr: 192.168.10.244/30}]}
---
apiVersion: v1
kind: Service
metadata: {name: outside, annotations: {lbipam.cilium.io/ips: 203.0.113.99}}
spec: {type: LoadBalancer, selector: {app: web}, ports: [{port: 8080}]}
""")
    try:
        def conflicting() -> bool:
            rows = {r.split()[0]: r.split() for r in lab.run("get", "ippools").stdout.splitlines()[1:]}
            return rows.get("overlapping", [""] * 3)[2] == "True"

        lab.wait_for(conflicting, 20, "the newer, overlapping pool to be marked conflicting")
        pool = lab.get_json("ippools", "overlapping")[0]
        msg = next(c["message"] for c in pool["status"]["conditions"] if c["type"] == "cilium.io/PoolConflict")
        assert msg == ("Pool conflicts since CIDR '192.168.10.244/30' overlaps CIDR '192.168.10.240-192.168.10.247' "
                       "from IP Pool 'lab-pool'")

        def outside_condition() -> dict[str, Any] | None:
            conds = lab.get_json("svc", "outside")[0].get("status", {}).get("conditions", [])
            return next((c for c in conds if c["type"] == "cilium.io/IPAMRequestSatisfied"), None)

        cond = lab.wait_for(outside_condition, 20, "the outside Service's condition")
        assert (cond["status"], cond["reason"]) == ("False", "no_pool")
        assert "'203.0.113.99'" in cond["message"]
        assert _ingress(lab, "outside") == ""
    finally:
        lab.run("delete", "svc", "outside", check=False)
        lab.run("delete", "ippools", "overlapping", check=False)


def test_failover_when_the_holder_dies(lab: Lab, app: str) -> None:
    """SIGKILL the holder's agent with its supervisor frozen (it stays dead): its lease expires, the other
    worker wins it, answers ARP and sends gratuitous ARP. Measured from the kill."""
    holder = lab.wait_for(lambda: _holder(lab), 30, "a lease holder")
    other = next(n for n in WORKERS if n != holder)
    old_mac, new_mac = _mac(lab, holder), _mac(lab, other)
    record = load_record(lab.name)
    assert record is not None
    supervisor = record.processes[f"agent-{holder}"]
    state = daemon_state(lab.name, f"agent-{holder}")
    assert state is not None and state.record is not None and is_alive(state.record)
    watch = subprocess.Popen([MEMBRANE, "--lab", lab.name, "lab", "exec", "world", "--", "python3", "-c", GARP_WATCH,
                              app, "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    frozen = False
    try:
        assert watch.stdout is not None and watch.stdout.readline().strip() == "ready"
        os.kill(supervisor.pid, signal.SIGSTOP)
        frozen = True
        os.kill(state.record.pid, signal.SIGKILL)
        killed = time.time()
        # A cold neighbour cache each try: a curl succeeds only once some node answers ARP again.
        t_curl = None
        while time.time() - killed < 45:
            lab.run("lab", "exec", "world", "--", "ip", "neigh", "flush", "to", app, check=False)
            if _curl(lab, app, timeout=1).startswith("Hostname: web-"):
                t_curl = time.time() - killed
                break
            time.sleep(0.2)
        assert t_curl is not None, "no node answered for the address within 45 s of the kill"
        garp = watch.communicate(timeout=70)[0].split()
        assert len(garp) == 2, f"no gratuitous ARP seen: {garp}"
        t_garp, garp_mac = float(garp[0]) - killed, garp[1]
        assert garp_mac == new_mac
        assert _holder(lab) == other
        assert _arping(lab, app) == [new_mac]
        neigh = lab.run("lab", "exec", "world", "--", "ip", "neigh", "show", app).stdout.lower()
        assert new_mac in neigh and old_mac not in neigh
        print(f"\nL2 failover (lease 15s, renew 5s, retry 2s): gratuitous ARP from {other} after {t_garp:.1f}s, "
              f"first curl with a cold ARP cache after {t_curl:.1f}s")
        assert 15 - 5 - 1 <= t_curl <= 15 + 5 + 3, "failover outside leaseDuration ± renewDeadline"
    finally:
        if frozen:
            os.kill(supervisor.pid, signal.SIGCONT)
        if watch.poll() is None:
            watch.kill()
            watch.communicate()
    # The restarted agent finds the lease taken and stays quiet: still exactly one node answers.
    lab.wait_for(lambda: lab.agent_status(holder).get("ready"), 60, "the restarted agent to be ready")
    time.sleep(3)
    assert _holder(lab) == other
    assert _arping(lab, app) == [new_mac]


def test_clean_stop_hands_over_within_a_retry_period(lab: Lab, app: str) -> None:
    holder = lab.wait_for(lambda: _holder(lab), 30, "a lease holder")
    other = next(n for n in WORKERS if n != holder)
    lab.run("lab", "stop", f"agent-{holder}")
    stopped = time.time()
    try:
        lab.wait_for(lambda: _holder(lab) == other, 10, "the other worker to take the released lease")
        took = time.time() - stopped
        assert took < 2 + 3, f"took {took:.1f}s"
        assert _arping(lab, app) == [_mac(lab, other)]
        assert json.loads(lab.run("bpf", "l2", "list", "--node", other, "-o", "json").stdout)[0]["ip"] == app
    finally:
        lab.run("lab", "start", f"agent-{holder}", check=False)
