"""Issue 11 items 3 and 6 end to end on a 3-node lab with its outside world.

6. Whatever is accepted but not enforced is said so: ``apply`` prints ``Warning:`` lines on stderr and
   still succeeds; ``policy get`` lists the same fields as notes.
3. ``toGroups`` is refused with the reason and nothing is stored; a ``CiliumCIDRGroup`` referenced by
   ``cidrGroupRef`` (and selected by ``cidrGroupSelector``) denies exactly its CIDRs, and changing the
   group changes the verdicts without touching the policy; an ICMP error about a connection passes an
   ingress policy that allows no ICMP (port unreachable from a peer pod reaches the sender as
   ECONNREFUSED); ``toServices`` allows exactly the Service's backends, following backends that
   come and go and a change of the Service's selector; expired conntrack entries are collected by the agent and ``bpf ct flush`` empties
   the table.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from membrane.datapath.maps.conntrack import ConntrackMap
from membrane.lab.paths import LabPaths
from membrane.lab.world import WORLD_NAMES
from tests.lab.harness import Lab

pytestmark = pytest.mark.root

DENIED, ALLOWED = WORLD_NAMES["ipinfo.io"], WORLD_NAMES["one.one.one.one"]
CLIENT = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "labels": {"app": "client"}},
          "spec": {"nodeName": "k8s-ctr",
                   "containers": [{"name": "c", "image": "nicolaka/netshoot", "command": ["sleep", "infinity"]}]}}
CLIENT_SEL = {"matchLabels": {"app": "client"}}
L7 = {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "l7"},
      "spec": {"endpointSelector": CLIENT_SEL,
               # what stays unenforced: TLS SNI next to HTTP rules (it needs terminatingTLS) and generic
               # l7proto rules (HTTP, DNS, Kafka, toFQDNs and serverNames alone are)
               "egress": [{"toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}],
                                        "serverNames": ["one.one.one.one"], "rules": {"http": [{}]}}]},
                          {"toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}],
                                        "rules": {"l7proto": "r2d2", "l7": [{"cmd": "READ"}]}}]}]}}
GROUPS = {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "groups"},
          "spec": {"endpointSelector": CLIENT_SEL,
                   "egress": [{"toGroups": [{"aws": {"securityGroupsIds": ["sg-1"]}}]}]}}


def group(cidrs: list[str], labels: dict[str, str] | None = None, name: str = "blocked") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **({"labels": labels} if labels else {})}
    return {"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumCIDRGroup", "metadata": meta,
            "spec": {"externalCIDRs": cidrs}}


def deny_by(entry: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "deny-group"},
            "spec": {"endpointSelector": CLIENT_SEL, "egress": [{"toCIDR": ["0.0.0.0/0"]}],
                     "egressDeny": [{"toCIDRSet": [entry]}]}}


def manifest(*objs: dict[str, Any]) -> str:
    return "\n---\n".join(json.dumps(o) for o in objs) + "\n"


@pytest.fixture(scope="module")
def client(lab: Lab) -> dict[str, Any]:
    lab.apply(manifest(CLIENT))
    return lab.wait_pods_ready(["client"])["client"]


@pytest.fixture
def cleanup(lab: Lab) -> Iterator[list[dict[str, Any]]]:
    objs: list[dict[str, Any]] = []
    yield objs
    if objs:
        lab.run("delete", "--ignore-not-found", "-f", "-", input=manifest(*objs), check=False)


def connects(lab: Lab, ip: str, port: int = 80) -> bool:
    code = f"import socket; socket.create_connection(({ip!r}, {port}), timeout=1).close()"
    return lab.exec("client", sys.executable, "-c", code, check=False).returncode == 0


def until_verdicts(lab: Lab, want: dict[str, bool], timeout: float = 15) -> None:
    last: dict[str, bool] = {}

    def ok() -> bool:
        nonlocal last
        last = {ip: connects(lab, ip) for ip in want}
        return last == want

    try:
        lab.wait_for(ok, timeout, "the verdicts the policy asks for")
    except AssertionError:
        raise AssertionError(f"wanted {want}, observed {last}") from None


def test_apply_warns_about_unenforced_fields_and_policy_get_notes_them(lab: Lab, client: dict, cleanup: list) -> None:
    proc = lab.run("apply", "-f", "-", input=manifest(L7))
    cleanup.append(L7)
    assert proc.returncode == 0 and "ciliumnetworkpolicy.cilium.io/l7 created" in proc.stdout
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("Warning: ")]
    assert [w.split(": ")[1:3] for w in warnings] == [
        ["CiliumNetworkPolicy/default/l7", "spec.egress[0].toPorts[0].serverNames"],
        ["CiliumNetworkPolicy/default/l7", "spec.egress[1].toPorts[0].rules"]], proc.stderr
    notes = [line for line in lab.run("policy", "get").stdout.splitlines() if line.startswith("Note: ")]
    assert [n.removeprefix("Note: ") for n in notes] == [w.removeprefix("Warning: ") for w in warnings]


HOST = {"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy", "metadata": {"name": "hosts"},
        "spec": {"nodeSelector": {}, "ingress": [{"fromEntities": ["cluster"]}]}}


def test_a_host_policy_is_said_unenforced_while_the_host_firewall_is_off(lab: Lab, cleanup: list) -> None:
    """This lab runs with the default hostFirewall.enabled=false (test_host_firewall turns it on)."""
    validated = lab.run("policy", "validate", "-f", "-", input=manifest(HOST)).stdout
    assert "note: spec.nodeSelector: host policy accepted, not enforced" in validated
    proc = lab.run("apply", "-f", "-", input=manifest(HOST))
    cleanup.append(HOST)
    assert "Warning: CiliumClusterwideNetworkPolicy/hosts: spec.nodeSelector: host policy accepted, not enforced: " \
           "the host firewall is off (hostFirewall.enabled=false)" in proc.stderr, proc.stderr
    rows = json.loads(lab.run("endpoint", "list", "--node", "k8s-w1", "-o", "json").stdout)
    assert all(r["id"] != 4096 for r in rows)  # no host endpoint without the host firewall


def test_to_groups_is_refused_and_nothing_stored(lab: Lab, client: dict) -> None:
    proc = lab.run("apply", "-f", "-", input=manifest(GROUPS), check=False)
    assert proc.returncode != 0
    assert "spec.egress[0].toGroups[0]: Forbidden: selects cloud-provider groups" in proc.stderr
    assert lab.run("get", "cnp", "groups", check=False).returncode != 0


def test_cidr_group_ref_and_selector_deny_the_groups_cidrs(lab: Lab, client: dict, cleanup: list) -> None:
    until_verdicts(lab, {DENIED: True, ALLOWED: True})
    blocked = group([f"{DENIED}/32"], {"team": "sec"})
    policy = deny_by({"cidrGroupRef": "blocked"})
    lab.apply(manifest(blocked, policy))
    cleanup += [policy, blocked]
    until_verdicts(lab, {DENIED: False, ALLOWED: True})
    # The group changes, the policy does not: the verdicts follow the group.
    lab.apply(manifest(group([ALLOWED], {"team": "sec"})))
    until_verdicts(lab, {DENIED: True, ALLOWED: False})
    # By label: the same group selected by cidrGroupSelector.
    lab.apply(manifest(deny_by({"cidrGroupSelector": {"matchLabels": {"team": "sec"}}})))
    until_verdicts(lab, {DENIED: True, ALLOWED: False})
    lab.apply(manifest(group([ALLOWED], {"team": "other"})))
    until_verdicts(lab, {DENIED: True, ALLOWED: True})


SERVER = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "server", "labels": {"app": "server"}},
          "spec": {"nodeName": "k8s-w1",
                   "containers": [{"name": "c", "image": "nicolaka/netshoot", "command": ["sleep", "infinity"]}]}}
NO_ICMP_IN = {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "no-icmp-in"},
              "spec": {"endpointSelector": CLIENT_SEL, "ingress": [{"fromEntities": ["host"]}],
                       "egress": [{"toEndpoints": [{"matchLabels": {"app": "server"}}]}]}}
UDP_PROBE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.connect((sys.argv[1], 9))
s.send(b"x")
try:
    s.recv(10)
    print("answer")
except ConnectionRefusedError:
    print("refused")
except TimeoutError:
    print("timeout")
"""


def test_icmp_error_about_a_connection_passes_without_an_allow(lab: Lab, client: dict, cleanup: list) -> None:
    lab.apply(manifest(SERVER))
    cleanup.append(SERVER)
    server_ip = lab.wait_pods_ready(["server"])["server"]["status"]["podIP"]

    def udp_probe() -> str:
        return lab.exec("client", sys.executable, "-c", UDP_PROBE, server_ip).stdout.strip()

    assert udp_probe() == "refused"  # no policy: the server's port unreachable comes back
    lab.apply(manifest(NO_ICMP_IN))
    cleanup.append(NO_ICMP_IN)
    # Ingress is enforced with no allow from the server: a ping from it is dropped...
    lab.wait_for(lambda: lab.exec("server", "ping", "-c1", "-W1", client["status"]["podIP"],
                                  check=False).returncode != 0, 15, "the client's ingress to be enforced")
    # ...but the error about the client's own datagram is related to its connection and passes.
    assert [udp_probe() for _ in range(5)] == ["refused"] * 5


AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.52"


def web(name: str, app: str, node: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"nodeName": node, "containers": [{"name": "s", "image": AGNHOST, "args": [
                "serve-hostname", "--tcp", "--http=false", "--port", "8080"],
                "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]}}


def service(app: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "websvc", "labels": {"tier": "front"}},
            "spec": {"selector": {"app": app}, "ports": [{"port": 8080, "protocol": "TCP"}]}}


TO_SERVICE = {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "to-service"},
              "spec": {"endpointSelector": CLIENT_SEL,
                       "egress": [{"toServices": [{"k8sService": {"serviceName": "websvc"}}]}]}}


def test_to_services_allows_exactly_the_backends_and_follows_them(lab: Lab, client: dict, cleanup: list) -> None:
    pods = [web("backend-a", "websvc", "k8s-w1"), web("other", "other", "k8s-w2")]
    lab.apply(manifest(*pods, service("websvc")))
    cleanup += [*pods, service("websvc")]
    ips = {n: p["status"]["podIP"] for n, p in lab.wait_pods_ready(["backend-a", "other"]).items()}

    def until(want: dict[str, bool]) -> None:
        last: dict[str, bool] = {}

        def ok() -> bool:
            nonlocal last
            last = {n: connects(lab, ips[n], 8080) for n in want}
            return last == want

        try:
            lab.wait_for(ok, 15, "the verdicts toServices asks for")
        except AssertionError:
            raise AssertionError(f"wanted {want}, observed {last}") from None

    until({"backend-a": True, "other": True})
    lab.apply(manifest(TO_SERVICE))
    cleanup.append(TO_SERVICE)
    until({"backend-a": True, "other": False})
    late = web("backend-b", "websvc", "k8s-ctr")  # a backend that appears later, policy untouched
    lab.apply(manifest(late))
    cleanup.append(late)
    ips["backend-b"] = lab.wait_pods_ready(["backend-b"])["backend-b"]["status"]["podIP"]
    until({"backend-a": True, "backend-b": True, "other": False})
    lab.apply(manifest(service("other")))  # the Service now selects the other pod
    until({"backend-a": False, "backend-b": False, "other": True})


def ct_entries(lab: Lab, daddr: str, dport: int) -> list[Any]:
    with ConntrackMap.open(LabPaths(lab.name).bpffs_dir("k8s-ctr")) as ct:
        return [r for r in ct.rows(include_expired=True) if r.daddr == daddr and r.dport == dport]


def test_conntrack_gc_collects_expired_entries_and_flush_empties(lab: Lab, client: dict) -> None:
    code = f"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', ({DENIED!r}, 5353))"
    lab.exec("client", sys.executable, "-c", code)
    assert ct_entries(lab, DENIED, 5353), "the UDP flow is not tracked"
    # A UDP entry lives 60 s; the collector runs every 30 s: gone within 100 s, never listed expired.
    lab.wait_for(lambda: not ct_entries(lab, DENIED, 5353), 100, "the agent to collect the expired entry")
    assert connects(lab, ALLOWED)
    listed = lab.run("bpf", "ct", "list", "--node", "k8s-ctr").stdout
    assert f"-> {ALLOWED}:80 " in listed
    out = lab.run("bpf", "ct", "flush", "--node", "k8s-ctr").stdout
    assert out.startswith("Flushed ") and int(out.split()[1]) >= 1, out
    assert f"-> {ALLOWED}:80 " not in lab.run("bpf", "ct", "list", "--node", "k8s-ctr").stdout
