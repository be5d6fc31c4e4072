"""Issue 18: an agent's death must not cut new, policy-allowed connections to its running pods.

With policies in force (ingress on the server, egress on the client), the agent of k8s-w1 is killed
(SIGKILL, by the PID in the lab's supervisor record) and kept dead for ~60 s by freezing its
supervisor (SIGSTOP, as a long crash-loop backoff would), while a client on k8s-w2 opens a new
connection to a pod on k8s-w1 every 0.1 s, and a pod on k8s-w1 does the same to a pod on k8s-w2
whose ingress policy admits it. Expected: zero failed connections, a denied pod stays denied, the node goes Ready=Unknown, and when the
supervisor resumes the agent is restarted and everything converges. A pod deleted while the agent was
dead is withdrawn after the restart, and its identity is garbage-collected after the GC grace.
Bounded: about 3 minutes with lab create.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from typing import Any

import pytest

from membrane.identity.gc import IDENTITY_GC_GRACE
from membrane.lab.daemons import daemon_state
from membrane.lab.processes import ProcRecord, is_alive
from membrane.lab.record import load_record
from membrane.operator.daemon import GC_INTERVAL
from membrane.store.etcd import EtcdClient
from membrane.store.layout import StoreLayout
from tests.lab.harness import MEMBRANE, Lab

OUTAGE = 60.0

PODS = """
apiVersion: v1
kind: Pod
metadata: {name: srv, labels: {app: srv}}
spec:
  nodeName: k8s-w1
  containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: doomed, labels: {app: doomed}}
spec:
  nodeName: k8s-w1
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: cli, labels: {app: cli}}
spec:
  nodeName: k8s-w2
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: intruder, labels: {app: intruder}}
spec:
  nodeName: k8s-w2
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: srv2, labels: {app: srv2}}
spec:
  nodeName: k8s-w2
  containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: cli1, labels: {app: cli1}}
spec:
  nodeName: k8s-w1
  containers: [{name: c, image: busybox}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: srv-from-cli}
spec:
  endpointSelector: {matchLabels: {app: srv}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: cli}}]
      toPorts: [{ports: [{port: "80", protocol: TCP}]}]
---
# Egress on the client: the live node must keep mapping the dead node's pod IP to its identity.
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: cli-to-srv}
spec:
  endpointSelector: {matchLabels: {app: cli}}
  egress:
    - toEndpoints: [{matchLabels: {app: srv}}]
      toPorts: [{ports: [{port: "80", protocol: TCP}]}]
---
# Ingress on a live node from a pod of the dead node: its source IP must keep its identity there.
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: srv2-from-cli1}
spec:
  endpointSelector: {matchLabels: {app: srv2}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: cli1}}]
      toPorts: [{ports: [{port: "80", protocol: TCP}]}]
"""

# A new TCP connection (and one HTTP exchange) every 0.1 s; prints how many worked and which failed.
CONNECT_LOOP = """
import json, socket, sys, time
ip, seconds = sys.argv[1], float(sys.argv[2])
ok, failed = 0, []
end = time.time() + seconds
while time.time() < end:
    t = time.time()
    try:
        with socket.create_connection((ip, 80), timeout=1.0) as s:
            s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
            if not s.recv(64):
                raise OSError("empty answer")
        ok += 1
    except OSError as exc:
        failed.append([round(t, 2), str(exc)])
    time.sleep(max(0.0, 0.1 - (time.time() - t)))
print(json.dumps({"ok": ok, "failed": failed}))
"""

CONNECT_ONCE = "import socket,sys; socket.create_connection((sys.argv[1], 80), timeout=1.5).close()"


def _ready_condition(lab: Lab, node: str) -> str:
    obj = lab.get_json("node", node)[0]
    return next((c.get("status", "") for c in obj.get("status", {}).get("conditions", [])
                 if c.get("type") == "Ready"), "")


def _store(lab: Lab) -> tuple[EtcdClient, StoreLayout]:
    return EtcdClient(lab.paths.etcd_endpoint), StoreLayout("default")


def _published(lab: Lab, ip: str) -> dict[str, Any] | None:
    client, layout = _store(lab)
    kv = client.get(layout.ipcache_key(f"{ip}/32"))
    return json.loads(kv.value) if kv is not None else None


def _identity_exists(lab: Lab, identity: int) -> bool:
    client, layout = _store(lab)
    return client.get(f"{layout.identities_prefix}id/{identity}") is not None


def _connects(lab: Lab, pod: str, ip: str) -> bool:
    return lab.exec(pod, "python3", "-c", CONNECT_ONCE, ip, check=False, timeout=20).returncode == 0


@pytest.fixture(scope="module")
def pods(lab: Lab) -> dict[str, dict[str, Any]]:
    lab.apply(PODS)
    pods = lab.wait_pods_ready(["srv", "doomed", "cli", "intruder", "srv2", "cli1"], timeout=90)
    srv = pods["srv"]["status"]["podIP"]
    lab.wait_for(lambda: _connects(lab, "cli", srv), 20, "cli to reach srv under the policy")
    lab.wait_for(lambda: _connects(lab, "cli1", pods["srv2"]["status"]["podIP"]), 20, "cli1 to reach srv2")
    lab.wait_for(lambda: not _connects(lab, "intruder", srv), 20, "intruder to be denied")
    return pods


def test_agent_death_cuts_no_new_allowed_connection(lab: Lab, pods: dict[str, dict[str, Any]]) -> None:
    srv_ip = pods["srv"]["status"]["podIP"]
    doomed_ip = pods["doomed"]["status"]["podIP"]
    srv_identity = _published(lab, srv_ip)["identity"]  # type: ignore[index]
    doomed_identity = _published(lab, doomed_ip)["identity"]  # type: ignore[index]
    record = load_record(lab.name)
    assert record is not None
    supervisor = record.processes["agent-k8s-w1"]
    state = daemon_state(lab.name, "agent-k8s-w1")
    assert state is not None and state.record is not None and is_alive(state.record)
    agent: ProcRecord = state.record
    restarts_before = state.restarts

    # cli (k8s-w2) -> srv (k8s-w1, the dead agent's node) and cli1 (k8s-w1) -> srv2 (k8s-w2).
    clients = {pod: subprocess.Popen([MEMBRANE, "--lab", lab.name, "exec", pod, "--", "python3", "-c", CONNECT_LOOP,
                                      ip, str(OUTAGE + 12)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for pod, ip in (("cli", srv_ip), ("cli1", pods["srv2"]["status"]["podIP"]))}
    frozen = False
    held: tuple[dict[str, Any] | None, bool] = (None, False)
    try:
        time.sleep(3)
        os.kill(supervisor.pid, signal.SIGSTOP)  # hold the restart back: the agent stays dead
        frozen = True
        assert is_alive(agent)
        os.kill(agent.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        lab.run("delete", "pod", "doomed")
        # The liveness lease (15 s) runs out: the node is marked down, its pods are not.
        lab.wait_for(lambda: _ready_condition(lab, "k8s-w1") == "Unknown", 40, "k8s-w1 Ready=Unknown")
        status = lab.run("lab", "status", check=False)
        assert status.returncode == 1 and "agent-k8s-w1" in status.stdout
        assert not _connects(lab, "intruder", srv_ip), "a denied pod got through while the agent was dead"
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - killed_at)))
        held = (_published(lab, srv_ip), _identity_exists(lab, srv_identity))
    finally:
        if frozen:
            os.kill(supervisor.pid, signal.SIGCONT)
        outputs = {pod: client.communicate(timeout=OUTAGE + 60) for pod, client in clients.items()}
    results = {}
    for pod, (out, err) in outputs.items():
        results[pod] = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        assert clients[pod].returncode == 0 and results[pod], f"{pod}: client loop failed: {err}"
        print(f"\n{pod}: new connections during the {OUTAGE:.0f} s agent outage: {results[pod]['ok']} ok, "
              f"{len(results[pod]['failed'])} failed")
    for pod, result in results.items():
        assert result["failed"] == [], f"{pod}: new connections failed while the agent was dead: {result['failed'][:5]}"
        assert result["ok"] > OUTAGE * 5
    assert held == ({"identity": srv_identity, "node": "k8s-w1"}, True), "withdrawn while the agent was dead"

    # The supervisor restarts the agent; the node comes back and state converges.
    lab.wait_for(lambda: lab.agent_status("k8s-w1").get("ready"), 60, "the restarted agent to be ready")
    after = daemon_state(lab.name, "agent-k8s-w1")
    assert after is not None and after.restarts == restarts_before + 1 and after.last_exit == "signal KILL"
    lab.wait_for(lambda: _ready_condition(lab, "k8s-w1") == "True", 30, "k8s-w1 Ready=True again")
    assert lab.run("lab", "status", check=False).returncode == 0
    assert _connects(lab, "cli", srv_ip) and not _connects(lab, "intruder", srv_ip)
    assert _published(lab, srv_ip) == {"identity": srv_identity, "node": "k8s-w1"}

    # The pod deleted during the outage is withdrawn once the agent is back, and its identity collected.
    lab.wait_for(lambda: _published(lab, doomed_ip) is None, 60, "the deleted pod's ipcache entry to go")
    lab.wait_for(lambda: not _identity_exists(lab, doomed_identity), 2 * GC_INTERVAL + IDENTITY_GC_GRACE + 15,
                 "the deleted pod's identity to be garbage-collected")
    assert _identity_exists(lab, srv_identity)


def test_a_hung_agent_is_reported_and_restarted_by_its_liveness_probe(lab: Lab, pods: dict[str, dict[str, Any]]) -> None:
    state = daemon_state(lab.name, "agent-k8s-w2")
    assert state is not None and state.record is not None and is_alive(state.record)
    agent, restarts_before = state.record, state.restarts
    os.kill(agent.pid, signal.SIGSTOP)
    try:
        status = lab.run("lab", "status", check=False)
        line = next(x for x in status.stdout.splitlines() if x.startswith("agent-k8s-w2"))
        assert status.returncode == 1 and "STOPPED (SIGSTOP)" in line, status.stdout
        assert lab.run("status", "--node", "k8s-w2", check=False).returncode != 0
        # Three failed probes 10 s apart: killed (SIGKILL ends a stopped process) and started again.
        lab.wait_for(lambda: (s := daemon_state(lab.name, "agent-k8s-w2")) and s.restarts > restarts_before, 60,
                     "the supervisor to restart the hung agent")
    finally:
        if is_alive(agent):
            os.kill(agent.pid, signal.SIGCONT)
    after = daemon_state(lab.name, "agent-k8s-w2")
    assert after is not None and after.last_exit == "signal KILL"
    lab.wait_for(lambda: lab.agent_status("k8s-w2").get("ready"), 60, "the restarted agent to be ready")
    assert _connects(lab, "cli", pods["srv"]["status"]["podIP"])
