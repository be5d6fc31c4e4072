"""Socket LB in a lab (bpf/sock.c, on by default as with Cilium's kube-proxy replacement): pods'
connect()/sendmsg() to a ClusterIP are translated at the socket, DNS to kube-dns keeps working,
the host's sockets are never translated, and deleting the lab detaches the cgroup links."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from membrane.datapath.maps.conntrack import ConntrackMap
from membrane.datapath.maps.sock_lb import RevSkMap, SockNetnsMap
from membrane.datapath.sock_lb import SOCK_PROGRAMS, cgroup2_root
from membrane.lab.daemons import daemon_state
from membrane.lab.paths import BPFFS_ROOT
from tests.lab.conftest import make_lab
from tests.lab.harness import Lab

APP = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: traefik/whoami, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 8080, targetPort: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: k8s-ctr
  containers: [{name: c, image: nicolaka/netshoot}]
"""
CT_SERVICE = 3
NODES = ("k8s-ctr", "k8s-w1")


@pytest.fixture(scope="module")
def lab(lab_requirements: None) -> Iterator[Lab]:
    yield from make_lab()


@pytest.fixture(scope="module")
def app(lab: Lab) -> dict:
    lab.apply(APP)
    lab.wait_for(lambda: len([p for p in lab.get_json("pods") if p["metadata"]["name"].startswith("web-")]) == 2,
                 30, "2 web pods")
    pods = lab.wait_pods_ready([p["metadata"]["name"] for p in lab.get_json("pods")], timeout=60)

    def ready() -> bool:
        eps = lab.get_json("ep", "web")
        return sum(len(s.get("addresses", [])) for s in eps[0].get("subsets", [])) == 2 if eps else False
    lab.wait_for(ready, 30, "2 endpoints behind web")
    return pods


def _pin_dir(lab: Lab, node: str) -> str:
    return f"{BPFFS_ROOT}/{lab.name}/{node}"


def _link_prog_ids(lab: Lab) -> set[int]:
    ids = set()
    for node in NODES:
        for name, _ in SOCK_PROGRAMS:
            out = subprocess.run(["bpftool", "-j", "link", "show", "pinned", f"{_pin_dir(lab, node)}/links/{name}"],
                                 capture_output=True, text=True, check=True).stdout
            ids.add(int(json.loads(out)["prog_id"]))
    return ids


def _cgroup_prog_ids() -> set[int]:
    out = subprocess.run(["bpftool", "-j", "cgroup", "show", cgroup2_root()], capture_output=True, text=True,
                         check=True).stdout
    return {int(row["id"]) for row in json.loads(out.strip() or "[]")}


def test_status_reports_socket_lb(lab: Lab, app: dict) -> None:
    out = lab.run("status", "--node", "k8s-ctr", "--verbose").stdout
    assert "Socket LB:" in out
    line = next(line for line in out.splitlines() if line.strip().startswith("Socket LB:"))
    assert line.split()[-1] == "Enabled", line


def test_every_pod_netns_of_the_node_is_registered(lab: Lab, app: dict) -> None:
    for node in NODES:
        with SockNetnsMap.open(_pin_dir(lab, node)) as netns:
            registered = set(netns.items().values())
        pods = {p["status"]["podIP"] for p in app.values() if p["spec"].get("nodeName") == node}
        assert pods and pods <= registered, (node, pods, registered)


def test_clusterip_connections_are_translated_at_the_socket(lab: Lab, app: dict) -> None:
    ip = lab.get_json("svc", "web")[0]["spec"]["clusterIP"]
    backends = {p["status"]["podIP"] for n, p in app.items() if n.startswith("web-")}
    out = lab.exec("client", "sh", "-c", f"for i in $(seq 8); do curl -s --max-time 2 http://{ip}:8080/; done").stdout
    assert out.count("Hostname: web-") == 8
    pin = _pin_dir(lab, "k8s-ctr")
    with RevSkMap.open(pin) as rev:
        frontends = {(b, fe, fp) for _c, b, _bp, fe, fp in rev.items()}
    assert {(b, ip, 8080) for b in backends} & frontends
    with ConntrackMap.open(pin) as ct:  # the per-packet translation never ran for them
        assert not [r for r in ct.rows() if r.direction == CT_SERVICE and r.daddr == ip]


def test_dns_to_the_kube_dns_clusterip(lab: Lab, app: dict) -> None:
    out = lab.exec("client", "dig", "+short", "+tries=1", "+time=3", "web.default.svc.cluster.local").stdout
    assert out.strip() == lab.get_json("svc", "web")[0]["spec"]["clusterIP"]
    full = lab.exec("client", "dig", "+tries=1", "+time=3", "web.default.svc.cluster.local").stdout
    assert "SERVER: 10.96.0.10#53" in full  # the reply came from the ClusterIP (recvmsg4)


def test_the_hosts_sockets_are_never_translated(lab: Lab, app: dict) -> None:
    ip = lab.get_json("svc", "web")[0]["spec"]["clusterIP"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((ip, 8080))
        except OSError:
            return  # no route from this host at all: nothing was translated either
        port = sock.getsockname()[1]
        with open("/proc/thread-self/net/udp") as table:
            rows = [line.split() for line in table.readlines()[1:]]
    remote = next(r[2] for r in rows if int(r[1].split(":")[1], 16) == port)
    assert socket.inet_ntoa(bytes.fromhex(remote.split(":")[0])[::-1]) == ip


def test_a_restarted_agent_replaces_its_links_and_keeps_translating(lab: Lab, app: dict) -> None:
    before = _link_prog_ids(lab)
    state = daemon_state(lab.name, "agent-k8s-ctr")
    assert state is not None and state.record is not None
    os.kill(state.record.pid, signal.SIGKILL)
    lab.wait_for(lambda: (s := daemon_state(lab.name, "agent-k8s-ctr")) and s.restarts > state.restarts, 60,
                 "the supervisor to restart the agent")
    lab.wait_for(lambda: lab.agent_status("k8s-ctr").get("ready"), 60, "the restarted agent to be ready")
    after = _link_prog_ids(lab)
    attached = _cgroup_prog_ids()
    assert after != before and after <= attached
    assert not (before - after) & attached  # the replaced links are gone, not left attached
    client_ip = app["client"]["status"]["podIP"]
    with SockNetnsMap.open(_pin_dir(lab, "k8s-ctr")) as netns:
        assert client_ip in netns.items().values()
    test_clusterip_connections_are_translated_at_the_socket(lab, app)


def test_lab_delete_detaches_the_links(lab: Lab, app: dict) -> None:
    ids = _link_prog_ids(lab)
    assert len(ids) == len(SOCK_PROGRAMS) * len(NODES) and ids <= _cgroup_prog_ids()
    lab.delete()
    assert not os.path.exists(f"{BPFFS_ROOT}/{lab.name}")
    deadline = time.monotonic() + 5  # a link is freed once its last reference is gone
    while ids & _cgroup_prog_ids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not ids & _cgroup_prog_ids()
