"""L2 announcement failover and LB-IPAM at scale (issue 13, "Measured"), on one 3-node lab.

Failover: the lease holder's agent is SIGKILLed with its supervisor frozen (it stays dead), and the
world retries ``curl http://<LB IP>/`` with a cold ARP cache (neighbour entry flushed before each try),
so a try succeeds only once another node answers ARP. Subject: seconds from the kill to the first
successful curl, one per repetition (the holder alternates); baseline: the configured leaseDuration
(Cilium's default 15 s; failover is expected within leaseDuration ± renewDeadline).

LB-IPAM: 1 000 LoadBalancer Services applied in groups of 100 with a /22 pool in place. Subject: seconds
from the first apply until all 1 000 hold an address; baseline: the same applies' own time (ClusterIP
and NodePort admission included), so the ratio is what waiting for the operator adds. The operator's
RSS growth is in the notes.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time

from bench.harness import Measurement
from membrane.lab.daemons import daemon_state
from membrane.lab.paths import LabPaths
from membrane.lab.record import load_record
from membrane.store.etcd import EtcdClient
from membrane.store.resources import ResourceStore

MEMBRANE = os.path.join(os.path.dirname(sys.executable), "membrane")
SERVICES = int(os.environ.get("MEMBRANE_BENCH_LB_SERVICES", "1000"))
LEASE_S = 15.0
APP = """
apiVersion: cilium.io/v2alpha1
kind: CiliumLoadBalancerIPPool
metadata: {name: l2-pool}
spec: {blocks: [{start: 192.168.10.240, stop: 192.168.10.240}], serviceSelector: {matchLabels: {color: blue}}}
---
apiVersion: cilium.io/v2alpha1
kind: CiliumLoadBalancerIPPool
metadata: {name: scale-pool}
spec: {blocks: [{cidr: 172.30.0.0/22}], serviceSelector: {matchLabels: {app: scale}}}
---
apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata: {name: workers}
spec:
  serviceSelector: {matchLabels: {color: blue}}
  nodeSelector: {matchExpressions: [{key: node-role.kubernetes.io/control-plane, operator: DoesNotExist}]}
  loadBalancerIPs: true
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, labels: {app: web}}
spec: {nodeName: k8s-w1, containers: [{name: web, image: traefik/whoami}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, labels: {app: web}}
spec: {nodeName: k8s-w2, containers: [{name: web, image: traefik/whoami}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, labels: {color: blue}}
spec: {type: LoadBalancer, selector: {app: web}, ports: [{port: 80}]}
"""


def _m(lab: str, *args: str, input: str | None = None, check: bool = True, timeout: float = 300) -> str:
    proc = subprocess.run([MEMBRANE, "--lab", lab, *args], input=input, text=True, capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"membrane {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def _wait(what: str, fn, timeout: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def _holder(lab: str) -> str:
    leases = json.loads(_m(lab, "get", "leases", "-n", "kube-system", "-o", "json") or "{}").get("items", [])
    return next((le["spec"]["holderIdentity"] for le in leases
                 if le["metadata"]["name"] == "cilium-l2announce-default-web"), "")


def _failover(lab: str, ip: str) -> float:
    holder = _wait("a lease holder", lambda: _holder(lab), 60)
    sup = load_record(lab).processes[f"agent-{holder}"]  # type: ignore[union-attr]
    state = daemon_state(lab, f"agent-{holder}")
    assert state is not None and state.record is not None
    os.kill(sup.pid, signal.SIGSTOP)
    try:
        os.kill(state.record.pid, signal.SIGKILL)
        killed = time.time()
        while time.time() - killed < 60:
            _m(lab, "lab", "exec", "world", "--", "ip", "neigh", "flush", "to", ip, check=False)
            if _m(lab, "lab", "exec", "world", "--", "curl", "-s", "--max-time", "1", f"http://{ip}/",
                  check=False).startswith("Hostname:"):
                took = time.time() - killed
                break
        else:
            raise RuntimeError("no node answered within 60 s")
    finally:
        os.kill(sup.pid, signal.SIGCONT)
    _wait("the killed agent back", lambda: _ready(lab, holder), 90)
    return took


def _ready(lab: str, node: str) -> bool:
    out = _m(lab, "status", "--node", node, "-o", "json", check=False)
    try:
        return bool(json.loads(out).get("ready"))
    except ValueError:
        return False


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def _scale(lab: str) -> tuple[float, float, int]:
    store = ResourceStore(EtcdClient(LabPaths(lab).etcd_endpoint), "default")
    op = daemon_state(lab, "operator")
    assert op is not None and op.record is not None
    rss0 = _rss_kib(op.record.pid)
    docs = [f"apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, labels: {{app: scale}}}}\n"
            f"spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n" for i in range(SERVICES)]
    start = time.time()
    applied = 0.0
    for i in range(0, SERVICES, 100):
        t = time.time()
        _m(lab, "apply", "-f", "-", input="---\n".join(docs[i:i + 100]))
        applied += time.time() - t

    def all_assigned() -> bool:
        svcs, _ = store.list("core", "Service", "default")
        return sum(1 for s in svcs if s["metadata"]["name"].startswith("s")
                   and s.get("status", {}).get("loadBalancer", {}).get("ingress")) >= SERVICES

    _wait(f"{SERVICES} Services to hold an address", all_assigned, 300)
    return time.time() - start, applied, _rss_kib(op.record.pid) - rss0


def run(runs: int) -> list[Measurement]:
    lab = f"b{secrets.token_hex(3)}"
    fail = Measurement("L2 announcement failover (3 nodes)", "kill to first curl, cold ARP cache", "s", [],
                       baseline_name="leaseDuration (configured)", higher_is_better=False,
                       notes="holder's agent SIGKILLed and held dead; timers 15 s / 5 s / 2 s")
    scale = Measurement(f"LB-IPAM, {SERVICES} LoadBalancer Services", "apply to all assigned", "s", [],
                        baseline_name="the applies alone", higher_is_better=False)
    try:
        _m(lab, "lab", "create", "--set", "l2announcements.enabled=true", timeout=300)
        _m(lab, "apply", "-f", "-", input=APP)
        ip = _wait("an LB IP for web", lambda: json.loads(_m(lab, "get", "svc", "web", "-o", "json"))
                   .get("status", {}).get("loadBalancer", {}).get("ingress", [{}])[0].get("ip"), 60)
        for i in range(max(runs, 5)):
            took = _failover(lab, ip)
            print(f"  failover {i + 1}: {took:.1f} s", flush=True)
            fail.subject.append(took)
            fail.baseline.append(LEASE_S)
        fail.notes += f"; median {statistics.median(fail.subject):.1f} s of {len(fail.subject)}"
        total, applied, rss = _scale(lab)
        print(f"  LB-IPAM: {SERVICES} assigned {total:.1f} s after the first apply (applies {applied:.1f} s), "
              f"operator RSS +{rss} KiB", flush=True)
        scale.subject.append(total)
        scale.baseline.append(applied)
        scale.notes = f"operator RSS +{rss} KiB for {SERVICES} Services"
    finally:
        _m(lab, "lab", "delete", check=False, timeout=300)
    return [fail, scale]
