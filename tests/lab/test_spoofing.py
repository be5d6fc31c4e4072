"""Source spoofing end to end: a pod that borrows another pod's, the world's or a node's address
reaches nothing, and is named as the sender in Hubble's drop (132 "Invalid source ip").

A CiliumNetworkPolicy lets only ``app=trusted`` (and the world, host and remote nodes) reach
``app=server``. Attackers on the server's node and on another node add the borrowed address to
their ``eth0`` (as any pod with NET_ADMIN can), with a warm neighbour entry for their gateway, and
send a UDP datagram and a TCP SYN from it. A packet capture inside the server pod records what
arrives; the honest client's packets must arrive, the attackers' must not.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.lab.harness import MEMBRANE, Lab

PORT = 7777
STOP_PORT = 7799

PODS = """
apiVersion: v1
kind: Pod
metadata: {name: server, labels: {app: server}}
spec:
  nodeName: k8s-w1
  containers: [{name: c, image: nicolaka/netshoot, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Pod
metadata: {name: trusted, labels: {app: trusted}}
spec:
  nodeName: k8s-w1
  containers: [{name: c, image: nicolaka/netshoot, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Pod
metadata: {name: attacker, labels: {app: attacker}}
spec:
  nodeName: k8s-w1
  containers: [{name: c, image: nicolaka/netshoot, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Pod
metadata: {name: attacker-far, labels: {app: attacker}}
spec:
  nodeName: k8s-w2
  containers: [{name: c, image: nicolaka/netshoot, command: [sleep, infinity]}]
"""

POLICY = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-from-trusted}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: trusted}}]
    - fromEntities: [world, host, remote-node]
"""

# Inside the server pod: every IPv4 TCP/UDP packet to PORT seen on eth0, as [proto, src, sport],
# until a datagram arrives on STOP_PORT (or 60 s pass).
CAPTURE = f"""
import json, select, socket, struct, time
cap = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
cap.bind(("eth0", 0))
stop = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
stop.bind(("0.0.0.0", {STOP_PORT}))
listen = socket.socket()
listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listen.bind(("0.0.0.0", {PORT}))
listen.listen(16)
print("ready", flush=True)
seen, deadline = [], time.monotonic() + 60
while time.monotonic() < deadline:
    ready, _, _ = select.select([cap, stop, listen], [], [], 0.5)
    if stop in ready:
        break
    if listen in ready:
        listen.accept()[0].close()
    if cap in ready:
        frame, meta = cap.recvfrom(65535)
        if meta[2] == socket.PACKET_OUTGOING:
            continue
        ip = frame[:20]
        proto, ihl = ip[9], (ip[0] & 15) * 4
        if proto in (6, 17):
            sport, dport = struct.unpack("!HH", frame[ihl:ihl + 4])
            if dport == {PORT}:
                seen.append([proto, socket.inet_ntoa(ip[12:16]), sport])
print(json.dumps(seen), flush=True)
"""

# Inside a client pod: a UDP datagram and a TCP SYN (connect with a short timeout) from SRC:SPORT.
SEND = """
import socket, sys
src, dst, port, sport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((src, sport))
for _ in range(3):
    u.sendto(b"hello", (dst, port))
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((src, sport))
t.settimeout(1.5)
try:
    t.connect((dst, port))
except OSError:
    pass
"""


@pytest.fixture(scope="module")
def pods(lab: Lab) -> dict:
    lab.apply(PODS)
    ready = lab.wait_pods_ready(["server", "trusted", "attacker", "attacker-far"])
    lab.apply(POLICY)
    return ready


def _ip(pods: dict, name: str) -> str:
    return pods[name]["status"]["podIP"]


def _send(lab: Lab, pod: str, src: str, dst: str, sport: int) -> None:
    lab.exec(pod, "python3", "-c", SEND, src, dst, str(PORT), str(sport), timeout=30)


def _spoof(lab: Lab, pod: str, own: str, address: str, dst: str, sport: int) -> None:
    """From ``pod``: warm the gateway's neighbour entry with its own address, borrow ``address``
    on eth0, send from it, give it back."""
    lab.exec(pod, "ping", "-c", "1", "-W", "1", dst, check=False)
    lab.exec(pod, "ip", "addr", "add", f"{address}/32", "dev", "eth0")
    try:
        _send(lab, pod, address, dst, sport)
    finally:
        lab.exec(pod, "ip", "addr", "del", f"{address}/32", "dev", "eth0", check=False)


@pytest.fixture
def capture(lab: Lab, pods: dict) -> Iterator[subprocess.Popen[str]]:
    """The packet capture in the server pod, stopped (or killed by its PID) afterwards."""
    proc = subprocess.Popen([MEMBRANE, "--lab", lab.name, "exec", "server", "--", "python3", "-c", CAPTURE],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", proc.stderr
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _stop(lab: Lab, pods: dict, proc: subprocess.Popen[str]) -> list[tuple[int, str, int]]:
    lab.exec("trusted", "python3", "-c",
             f"import socket; socket.socket(2, 2).sendto(b'stop', ('{_ip(pods, 'server')}', {STOP_PORT}))")
    out, err = proc.communicate(timeout=30)
    return [tuple(x) for x in json.loads(out.strip().splitlines()[-1])]


def _drops(lab: Lab, node: str) -> int:
    metrics = lab.agent_status(node).get("datapath-metrics", {})
    return metrics.get("132/egress", {}).get("packets", 0)


def _node_ip(lab: Lab, name: str) -> str:
    node = next(n for n in lab.get_json("nodes") if n["metadata"]["name"] == name)
    return next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")


def test_spoofed_sources_reach_nothing_and_honest_ones_do(lab: Lab, pods: dict,
                                                          capture: subprocess.Popen[str]) -> None:
    server, trusted = _ip(pods, "server"), _ip(pods, "trusted")
    drops_w1, drops_w2 = _drops(lab, "k8s-w1"), _drops(lab, "k8s-w2")
    _send(lab, "trusted", trusted, server, 40001)  # the honest path
    attempts = {  # sport -> (attacker pod, borrowed address)
        50001: ("attacker", trusted),  # another pod, same node
        50002: ("attacker-far", trusted),  # another pod, across nodes
        50003: ("attacker", "203.0.113.11"),  # the world
        50004: ("attacker", _node_ip(lab, "k8s-w2")),  # a node (remote-node)
        50005: ("attacker-far", "203.0.113.12"),  # the world, across nodes
    }
    for sport, (pod, address) in attempts.items():
        _spoof(lab, pod, _ip(pods, pod), address, server, sport)
    seen = _stop(lab, pods, capture)

    honest = {(proto, src) for proto, src, sport in seen if sport == 40001}
    assert honest == {(17, trusted), (6, trusted)}, seen
    leaked = [(proto, src, sport) for proto, src, sport in seen if sport in attempts]
    assert leaked == [], f"spoofed packets reached the server: {leaked}"
    # Each attempt is one UDP burst and SYNs; every one of them was counted where it was sent.
    assert _drops(lab, "k8s-w1") >= drops_w1 + 3 * 4
    assert _drops(lab, "k8s-w2") >= drops_w2 + 2 * 4


def _flows(lab: Lab, *args: str) -> list[dict]:
    out = lab.run("observe", "--last", "2000", "-o", "json", *args, timeout=30).stdout
    return [json.loads(line)["flow"] for line in out.splitlines() if line.strip()]


def test_hubble_and_metrics_name_the_attacker(lab: Lab, pods: dict) -> None:
    server, trusted = _ip(pods, "server"), _ip(pods, "trusted")
    _spoof(lab, "attacker", _ip(pods, "attacker"), trusted, server, 50011)
    _spoof(lab, "attacker-far", _ip(pods, "attacker-far"), trusted, server, 50012)

    def spoof_drops() -> list[dict] | None:
        got = [f for f in _flows(lab, "--verdict", "DROPPED")
               if f.get("drop_reason_desc") == "INVALID_SOURCE_IP" and f.get("IP", {}).get("source") == trusted]
        return got if {f["source"].get("pod_name") for f in got} >= {"attacker", "attacker-far"} else None

    drops = lab.wait_for(spoof_drops, 15, "INVALID_SOURCE_IP drops naming both attackers")
    assert {f["source"]["pod_name"] for f in drops} == {"attacker", "attacker-far"}
    assert all(f["source"]["labels"] and "k8s:app=attacker" in f["source"]["labels"] for f in drops)
    text = lab.run("observe", "--last", "2000", "--verdict", "DROPPED").stdout
    assert any("default/attacker" in line and "Invalid source ip" in line for line in text.splitlines()), text

    def counted() -> bool:
        out = lab.run("metrics", "list", "--node", "k8s-w1").stdout
        return any(line.startswith("cilium_drop_count_total") and "reason=Invalid source ip" in line
                   and float(line.split()[-1]) > 0 for line in out.splitlines())

    lab.wait_for(counted, 15, 'cilium_drop_count_total{reason="Invalid source ip"}')


# Inside a client pod: COUNT ARP requests for TIP claiming SIP, sent raw on eth0 with its own MAC.
ARP_CLAIM = """
import socket, struct, sys
sip, tip, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0x0806))
mac = s.getsockname()[4]
arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, socket.inet_aton(sip), bytes(6), socket.inet_aton(tip))
for _ in range(count):
    s.send(b"\\xff" * 6 + mac + struct.pack("!H", 0x0806) + arp)
"""


def test_arp_for_another_address_is_refused(lab: Lab, pods: dict) -> None:
    """ARP requests claiming the trusted pod's address never leave the attacker's veth; its own
    ARP still resolves the gateway."""
    before = _drops(lab, "k8s-w1")
    lab.exec("attacker", "python3", "-c", ARP_CLAIM, _ip(pods, "trusted"), _ip(pods, "server"), "3")
    lab.wait_for(lambda: _drops(lab, "k8s-w1") >= before + 3, 10, "spoofed ARP counted as 132")
    lab.exec("attacker", "ip", "neigh", "flush", "dev", "eth0")
    assert lab.exec("attacker", "ping", "-c", "1", "-W", "2", _ip(pods, "trusted"), check=False).returncode == 0
