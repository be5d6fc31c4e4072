"""The seeds' Helm lines on a real lab: install, each upgrade in order, and an upgrade rolled out
across the agents while a TCP stream between nodes keeps flowing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.helm_lines import helm_commands
from tests.lab.harness import MEMBRANE, Lab, unique_lab

SERVER_CLIENT = """
apiVersion: v1
kind: Pod
metadata: {name: roll-server}
spec:
  nodeName: k8s-w1
  containers:
    - name: s
      image: busybox
      command: ["python3", "-c", "{server}"]
      ports: [{containerPort: 5001}]
---
apiVersion: v1
kind: Pod
metadata: {name: roll-client}
spec:
  nodeName: k8s-w2
  containers: [{name: c, image: busybox}]
"""

# Acknowledges every line it receives: the client notices any reset or stall.
ECHO_SERVER = (
    "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
    "s.bind(('0.0.0.0',5001));s.listen(4)\\n"
    "while True:\\n c,_=s.accept()\\n f=c.makefile('rwb')\\n"
    " for line in f:\\n  f.write(line);f.flush()"
)

# One connection, a line every 20 ms, until the stop file appears (or 300 s); prints lines and worst RTT.
STREAM_CLIENT = """
import os, socket, sys, time
s = socket.create_connection((sys.argv[1], 5001), timeout=3)
f = s.makefile('rwb')
deadline = time.time() + 300
n, worst = 0, 0.0
while time.time() < deadline and not os.path.exists(sys.argv[2]):
    t = time.time()
    f.write(b'%d\\n' % n); f.flush()
    assert f.readline() == b'%d\\n' % n, 'echo lost'
    worst = max(worst, time.time() - t)
    n += 1
    time.sleep(0.02)
print(n, round(worst, 3))
"""


@pytest.fixture(scope="module")
def seed_lab(lab_requirements: None) -> Iterator[tuple[Lab, subprocess.CompletedProcess[str]]]:
    """A lab created by the seeds' `helm install` line (helm install → membrane lab create)."""
    lab = Lab(unique_lab())
    try:
        created = lab.run(*helm_commands()[0], timeout=240)
        yield lab, created
    finally:
        lab.delete()
        left = lab.leftovers()
        assert not left, f"lab delete left things behind: {left}"


def _dbg_config(lab: Lab, node: str) -> dict[str, str]:
    return json.loads(lab.run("dbg", "config", "--all", "--node", node, "-o", "json").stdout)["read-only"]


def _agent_pids(lab: Lab) -> dict[str, int]:
    pids = {}
    for node in ("k8s-ctr", "k8s-w1", "k8s-w2"):
        with open(f"{lab.paths.run_dir}/supervise/agent-{node}.json") as fh:
            pids[node] = json.load(fh)["pid"]
    return pids


def test_install_line_warns_only_for_keys_without_effect_and_configures_the_agents(
        seed_lab: tuple[Lab, subprocess.CompletedProcess[str]]) -> None:
    lab, created = seed_lab
    warnings = [line for line in created.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 7, created.stderr
    assert all(("has no effect" in w or "is not a key of Cilium's chart" in w) for w in warnings), warnings
    for node in ("k8s-ctr", "k8s-w1", "k8s-w2"):
        cfg = _dbg_config(lab, node)
        assert (cfg["IPAM"], cfg["RoutingMode"], cfg["Debug"], cfg["KubeProxyReplacement"]) == (
            "kubernetes", "native", "true", "true")
        assert cfg["EnableL2Announcements"] == "false" and cfg["IPv4NativeRoutingCIDR"] == "192.168.0.0/16"
    text = lab.run("dbg", "config", "--all").stdout
    assert any(line.startswith("EnableL2Announcements") and line.endswith(": false") for line in text.splitlines())
    status = lab.run("dbg", "status", "--node", "k8s-ctr", "--verbose").stdout
    assert re.search(r"^KubeProxyReplacement:\s+True", status, re.M), status
    assert re.search(r"^Masquerading:\s+BPF\s", status, re.M), status
    values = yaml.safe_load(lab.run("lab", "values", "-o", "yaml").stdout)
    assert values["hubble"]["relay"]["enabled"] is True and values["k8sServiceHost"] == "192.168.10.10"
    assert lab.run("lab", "values").stdout.startswith("USER-SUPPLIED VALUES:\n")
    computed = yaml.safe_load(lab.run("lab", "values", "--all", "-o", "yaml").stdout)
    assert computed["ipam"]["mode"] == "kubernetes" and computed["l2announcements"]["enabled"] is False


def test_upgrade_lines_of_features_not_built_are_refused_and_change_nothing(
        seed_lab: tuple[Lab, subprocess.CompletedProcess[str]]) -> None:
    lab, _ = seed_lab
    before_values = lab.run("lab", "values", "-o", "json").stdout
    before_pids = _agent_pids(lab)
    built = ("l2announcements.enabled=true", "encryption.type=wireguard", "egressGateway.enabled=true")
    seeds = [argv for argv in helm_commands()[2:]  # [1], ip-masq-agent, is built: see the last test
             if not any(key in argv for key in built)]  # those upgrades would go through
    upgrade = ["lab", "upgrade", "cilium", "cilium/cilium", "--namespace", "kube-system", "--reuse-values"]
    not_built = [[*upgrade, "--set", "bandwidthManager.enabled=true"],
                 [*upgrade, "--set", "cluster.id=2", "--set", "debug.enabled=true"]]
    for argv in seeds + not_built:
        proc = lab.run(*argv, check=False)
        assert proc.returncode == 1, proc
        assert "is not implemented yet" in proc.stderr and "nothing was changed" in proc.stderr, proc.stderr
    assert lab.run("lab", "values", "-o", "json").stdout == before_values
    assert _agent_pids(lab) == before_pids


def test_upgrade_needing_a_new_lab_is_refused_with_the_reason(
        seed_lab: tuple[Lab, subprocess.CompletedProcess[str]]) -> None:
    lab, _ = seed_lab
    proc = lab.run("lab", "upgrade", "--set", "debug.enabled=true", check=False)  # no --reuse-values
    assert proc.returncode == 1
    assert "ipam.mode: kubernetes -> cluster-pool needs a new lab" in proc.stderr
    assert "without --reuse-values" in proc.stderr
    proc = lab.run("lab", "upgrade", "--reuse-values", "--set", "clusterPoolIPv4MaskSize=26", check=False)
    assert proc.returncode == 1 and "clusterPoolIPv4MaskSize" in proc.stderr and "needs a new lab" in proc.stderr


def test_tcp_stream_survives_the_rollout_of_an_upgrade(
        seed_lab: tuple[Lab, subprocess.CompletedProcess[str]], tmp_path: Any) -> None:
    lab, _ = seed_lab
    lab.apply(SERVER_CLIENT.replace("{server}", ECHO_SERVER))
    pods = lab.wait_pods_ready(["roll-server", "roll-client"], timeout=90)
    server_ip = pods["roll-server"]["status"]["podIP"]
    stop = os.path.join(str(tmp_path), "stop")
    pids = _agent_pids(lab)
    values_file = tmp_path / "maglev.yaml"
    values_file.write_text("loadBalancer:\n  algorithm: maglev\n")
    client = subprocess.Popen([MEMBRANE, "--lab", lab.name, "exec", "roll-client", "--", "python3", "-c",
                               STREAM_CLIENT, server_ip, stop],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        upgraded = lab.run("lab", "upgrade", "--reuse-values", "-f", str(values_file),
                           "--set", "debug.enabled=false", timeout=400)
        time.sleep(2)
        with open(stop, "w"):
            pass
        out, err = client.communicate(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert client.returncode == 0, f"the stream broke during the rollout: {err}\n{upgraded.stdout}"
    count, _worst = out.split()
    assert int(count) > 200
    lines = upgraded.stdout.splitlines()
    order = [line.split("restarting ")[1] for line in lines if "restarting agent-" in line]
    assert order == ["agent-k8s-ctr", "agent-k8s-w1", "agent-k8s-w2"], upgraded.stdout
    assert 'daemon set "cilium" successfully rolled out' in upgraded.stdout
    assert lab.run("lab", "rollout", "status").stdout.strip() == 'daemon set "cilium" successfully rolled out'
    new_pids = _agent_pids(lab)
    assert all(new_pids[n] != pids[n] for n in pids), (pids, new_pids)
    for node in pids:
        cfg = _dbg_config(lab, node)
        assert (cfg["NodePortAlg"], cfg["Debug"], cfg["IPAM"]) == ("maglev", "false", "kubernetes")
    assert re.search(r"Backend Selection:\s+Maglev", lab.run("status", "--verbose", "--node", "k8s-w1").stdout)
    values = yaml.safe_load(lab.run("lab", "values", "-o", "yaml").stdout)
    assert values["loadBalancer"] == {"algorithm": "maglev"} and values["debug"] == {"enabled": False}
    # The same values again: nothing to roll.
    again = lab.run("lab", "upgrade", "--reuse-values", timeout=60)
    assert "configuration unchanged" in again.stdout and _agent_pids(lab) == new_pids
    lab.exec("roll-client", "python3", "-c",
             f"import socket; socket.create_connection(('{server_ip}', 5001), timeout=3)")
    lab.run("delete", "pod", "roll-server", "roll-client")


def test_rollout_status_counts_agents_on_the_stored_configuration(
        seed_lab: tuple[Lab, subprocess.CompletedProcess[str]]) -> None:
    lab, _ = seed_lab
    lab.run("lab", "stop", "agent-k8s-w2")
    try:
        proc = lab.run("lab", "rollout", "status", "--watch=false", check=False)
        assert proc.returncode == 1
        assert 'rollout to finish: 2 out of 3 new pods have been updated...' in proc.stdout, proc.stdout
        assert "not yet updated and ready: k8s-w2" in proc.stdout
    finally:
        lab.run("lab", "start", "agent-k8s-w2")
    done = lab.run("lab", "rollout", "status", "--timeout", "90")
    assert done.stdout.strip().endswith('daemon set "cilium" successfully rolled out')
    before = _agent_pids(lab)
    restarted = lab.run("lab", "rollout", "restart", timeout=400)
    assert "3 agents, one at a time" in restarted.stdout
    after = _agent_pids(lab)
    assert all(after[n] != before[n] for n in before)


def test_the_ip_masq_agent_line_rolls_out_and_turns_it_on(
        seed_lab: tuple[Lab, subprocess.CompletedProcess[str]]) -> None:
    """The seeds' second line (ip-masq-agent) is built: it keeps the install's values and every agent
    runs with it. The datapath effect is tested in test_ip_masq_agent.py."""
    lab, _ = seed_lab
    upgraded = lab.run(*helm_commands()[1], timeout=400)
    assert 'daemon set "cilium" successfully rolled out' in upgraded.stdout, upgraded.stdout
    assert "warning" not in upgraded.stderr, upgraded.stderr
    assert yaml.safe_load(lab.run("lab", "values", "-o", "yaml").stdout)["ipMasqAgent"] == {"enabled": True}
    for node in ("k8s-ctr", "k8s-w1", "k8s-w2"):
        cfg = _dbg_config(lab, node)
        assert (cfg["EnableIPMasqAgent"], cfg["IPAM"], cfg["IPv4NativeRoutingCIDR"]) == (
            "true", "kubernetes", "192.168.0.0/16")
        status = lab.run("status", "--node", node).stdout
        assert re.search(r"^Masquerading:\s+BPF \(ip-masq-agent\)\s+\[eth1\]\s+192\.168\.0\.0/16", status, re.M), status
        assert "203.0.113.0/24" in lab.run("bpf", "ipmasq", "list", "--node", node).stdout


def test_the_wireguard_line_rolls_out_and_encrypts_between_nodes(
        seed_lab: tuple[Lab, subprocess.CompletedProcess[str]]) -> None:
    """The seeds' last line turns WireGuard on in a running lab: every agent rolls with it, publishes
    its key and peers with the other two; pods on different nodes still talk. The wire itself is
    tested in test_wireguard.py."""
    lab, _ = seed_lab
    line = next(argv for argv in helm_commands() if "encryption.type=wireguard" in argv)
    upgraded = lab.run(*line, timeout=400)
    assert 'daemon set "cilium" successfully rolled out' in upgraded.stdout, upgraded.stdout
    for node in ("k8s-ctr", "k8s-w1", "k8s-w2"):
        assert _dbg_config(lab, node)["EnableWireguard"] == "true"
        lab.wait_for(lambda n=node: re.search(r"^Encryption:\s+Wireguard\s+\[cilium_wg0 \(Pubkey: \S+, Port: 51871, "
                                              r"Peers: 2\)\]", lab.run("status", "--node", n).stdout, re.M),
                     20, f"{node} to peer with the other two")
    lab.apply(SERVER_CLIENT.replace("{server}", ECHO_SERVER))
    pods = lab.wait_pods_ready(["roll-server", "roll-client"], timeout=90)
    assert pods["roll-server"]["spec"]["nodeName"] != pods["roll-client"]["spec"]["nodeName"]
    server_ip = pods["roll-server"]["status"]["podIP"]
    lab.exec("roll-client", "python3", "-c",
             f"import socket; socket.create_connection(('{server_ip}', 5001), timeout=3)")
    lab.run("delete", "pod", "roll-server", "roll-client")
