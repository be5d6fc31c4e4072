"""CIDR policy apply → enforced (p50/p99), against the same for an identity policy (issue 11 item 2).

A 2-node lab: a client pod on k8s-ctr whose egress is already enforced (a base policy that allows
nobody), a server pod on k8s-w1 and a listener in the lab's outside world (192.168.10.200), both on
ports BASE..BASE+SAMPLES. Each sample starts a probe in the client that opens a fresh connection to a
new port every 10 ms (every one a new first packet, so a new policy verdict), runs ``membrane apply`` of
one CiliumNetworkPolicy allowing that port, and times from just before the CLI starts until the first
connection is accepted, alternating:

- CIDR: ``toCIDRSet 192.168.0.0/16 except 192.168.99.<n>/32`` — every sample names a prefix no policy
  named before, so the agent allocates a CIDR identity and writes the ipcache in the same step as the
  rules (the cost this benchmark is about), to the world listener;
- identity: ``toEndpoints app=server`` to the server pod (identities already known).

One run = SAMPLES of each; the run's p50 and p99 are its numbers, the identity policy's the baseline.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

from bench.harness import Measurement
from bench.netbench import bench_lab, membrane, wait_pods
from bench.policy import PROBE
from membrane.lab.paths import LabPaths

SAMPLES = int(os.environ.get("MEMBRANE_BENCH_CIDR_SAMPLES", "20"))
BASE = 7300
WORLD = "192.168.10.200"
PROBE_TIMEOUT = 30.0
LISTEN = """
import selectors, socket, sys
sel = selectors.DefaultSelector()
for port in range(int(sys.argv[1]), int(sys.argv[2])):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(256); sel.register(s, selectors.EVENT_READ)
print("listening", flush=True)
while True:
    for key, _ in sel.select():
        c, _ = key.fileobj.accept(); c.close()
"""
PODS = """apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec: {nodeName: k8s-ctr, containers: [{name: c, image: busybox}]}
---
apiVersion: v1
kind: Pod
metadata: {name: server, labels: {app: server}}
spec: {nodeName: k8s-w1, containers: [{name: c, image: busybox}]}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: base}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress: [{toEndpoints: [{matchLabels: {app: nobody}}]}]
"""


def _cidr_policy(n: int, port: int) -> str:
    return f"""apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: cidr-{n}}}
spec:
  endpointSelector: {{matchLabels: {{app: client}}}}
  egress:
    - toCIDRSet: [{{cidr: 192.168.0.0/16, except: [192.168.99.{n % 250}/32]}}]
      toPorts: [{{ports: [{{port: "{port}", protocol: TCP}}]}}]
"""


def _identity_policy(n: int, port: int) -> str:
    return f"""apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: ident-{n}}}
spec:
  endpointSelector: {{matchLabels: {{app: client}}}}
  egress:
    - toEndpoints: [{{matchLabels: {{app: server}}}}]
      toPorts: [{{ports: [{{port: "{port}", protocol: TCP}}]}}]
"""


def _listener(netns: str, first: int, last: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", LISTEN, str(first), str(last)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "listening":
        raise RuntimeError(f"listener in {netns} did not start")
    return proc


def _sample(lab: str, client_netns: str, target: str, port: int, policy: str) -> float:
    """Seconds from ``membrane apply`` of ``policy`` until the client's first connection to target:port."""
    probe = subprocess.Popen(["ip", "netns", "exec", client_netns, sys.executable, "-c", PROBE, target, str(port),
                              str(PROBE_TIMEOUT)], stdout=subprocess.PIPE, text=True)
    try:
        assert probe.stdout is not None
        probe.stdout.readline()  # "ready"
        if select.select([probe.stdout], [], [], 0.3)[0]:
            raise RuntimeError(f"the client reached {target}:{port} before its policy: egress not enforced")
        t0 = time.monotonic()
        membrane(lab, "apply", "-f", "-", input=policy)
        line = probe.stdout.readline().strip()
        if not line:
            raise RuntimeError(f"the policy for {target}:{port} was not enforced within {PROBE_TIMEOUT:.0f} s")
        return float(line) - t0
    finally:
        probe.kill()
        probe.wait()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run(runs: int) -> list[Measurement]:
    name = f"CIDR policy apply→enforced ({SAMPLES} samples per run, 2 nodes)"
    base = "identity policy (toEndpoints)"
    p50 = Measurement(name, "apply → enforced p50, CIDR policy", "ms", [], baseline_name=base, higher_is_better=False)
    p99 = Measurement(name, "apply → enforced p99, CIDR policy", "ms", [], baseline_name=base, higher_is_better=False)
    with bench_lab(2) as lab:
        membrane(lab, "apply", "-f", "-", input=PODS)
        pods = wait_pods(lab, ["client", "server"])
        paths = LabPaths(lab)
        client_ns = paths.pod_netns("default", "client")
        listeners = [_listener(paths.pod_netns("default", "server"), BASE, BASE + 2 * SAMPLES * runs),
                     _listener(paths.node_netns("world"), BASE, BASE + 2 * SAMPLES * runs)]
        try:
            port = BASE
            for r in range(runs):
                cidr, ident = [], []
                for i in range(SAMPLES):
                    n = r * SAMPLES + i
                    cidr.append(_sample(lab, client_ns, WORLD, port, _cidr_policy(n, port)) * 1e3)
                    ident.append(_sample(lab, client_ns, pods["server"]["status"]["podIP"], port + 1,
                                         _identity_policy(n, port + 1)) * 1e3)
                    port += 2
                print(f"  run {r + 1}: CIDR p50 {_pct(cidr, .5):.0f} ms p99 {_pct(cidr, .99):.0f} ms; identity p50 "
                      f"{_pct(ident, .5):.0f} ms p99 {_pct(ident, .99):.0f} ms", flush=True)
                p50.subject.append(_pct(cidr, .5))
                p50.baseline.append(_pct(ident, .5))
                p99.subject.append(_pct(cidr, .99))
                p99.baseline.append(_pct(ident, .99))
        finally:
            for proc in listeners:  # only the listeners this benchmark started
                proc.kill()
                proc.wait()
    note = (f"{SAMPLES} samples of each kind per run, alternating; every CIDR sample names a new except prefix (a "
            "new CIDR identity and ipcache entry); latency includes the membrane CLI; probe = a new TCP connection "
            "every 10 ms")
    p50.notes = p99.notes = note
    return [p50, p99]
