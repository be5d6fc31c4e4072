"""Hubble's Observer API on a node's TCP :4244 takes only mutual TLS (issue 18 item 6), as Cilium's chart
does by default: from the lab's world namespace a plaintext client and a client with another CA's
certificate are refused, the relay still merges every node, ``membrane observe`` works with the lab's
certificates and fails in one line without them; ``--set hubble.tls.enabled=false`` opts out."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from membrane.hubble.proto.observer import observer_pb2, observer_pb2_grpc
from membrane.hubbleserver.certs import RELAY_CLIENT_NAME, CertificateAuthority
from tests.lab.conftest import make_lab
from tests.lab.harness import MEMBRANE, Lab

W1 = "192.168.10.101:4244"
PODS = """
apiVersion: v1
kind: Pod
metadata: {name: tls-client}
spec:
  nodeName: k8s-ctr
  containers: [{name: c, image: nicolaka/netshoot}]
---
apiVersion: v1
kind: Pod
metadata: {name: tls-w1}
spec:
  nodeName: k8s-w1
  containers: [{name: web, image: traefik/whoami}]
---
apiVersion: v1
kind: Pod
metadata: {name: tls-w2}
spec:
  nodeName: k8s-w2
  containers: [{name: web, image: traefik/whoami}]
"""

# A gRPC client of Hubble's API that is not ours: prints the status code of ServerStatus on W1.
RAW_CLIENT = """
import sys, grpc
from membrane.hubble.proto.observer import observer_pb2, observer_pb2_grpc
ca, cert, key = sys.argv[1:4]
if ca:
    creds = grpc.ssl_channel_credentials(open(ca, 'rb').read(), open(key, 'rb').read() if key else None,
                                         open(cert, 'rb').read() if cert else None)
    channel = grpc.secure_channel(sys.argv[4], creds)
else:
    channel = grpc.insecure_channel(sys.argv[4])
try:
    observer_pb2_grpc.ObserverStub(channel).ServerStatus(observer_pb2.ServerStatusRequest(), timeout=5)
    print("OK")
except grpc.RpcError as exc:
    print(exc.code().name)
"""


@pytest.fixture(scope="module")
def pods(lab: Lab) -> dict:
    lab.apply(PODS)
    pods = lab.wait_pods_ready(["tls-client", "tls-w1", "tls-w2"])
    for name in ("tls-w1", "tls-w2"):
        lab.exec("tls-client", "ping", "-c", "2", "-i", "0.2", pods[name]["status"]["podIP"])
    return pods


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A client certificate for the relay's own name, from a CA the lab never heard of."""
    d = tmp_path_factory.mktemp("foreign")
    ca = CertificateAuthority.create()
    issued = ca.issue_client(RELAY_CLIENT_NAME)
    for name, data in (("ca.crt", ca.cert_pem), ("client.crt", issued.cert_pem), ("client.key", issued.key_pem)):
        (d / name).write_bytes(data)
    return {"ca": str(d / "ca.crt"), "cert": str(d / "client.crt"), "key": str(d / "client.key")}


def _in_world(lab: Lab, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", f"{lab.name}.world", *cmd], text=True, capture_output=True,
                          timeout=timeout)


def _observe_from_world(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return _in_world(lab, MEMBRANE, "--lab", lab.name, "observe", "--server", W1, "--timeout", "5", *args)


def _raw(lab: Lab, ca: str = "", cert: str = "", key: str = "") -> str:
    return _in_world(lab, sys.executable, "-c", RAW_CLIENT, ca, cert, key, W1).stdout.strip()


def _lab_tls_flags(lab: Lab) -> list[str]:
    cert, key = lab.paths.hubble_relay_client_pair
    return ["--tls", "--tls-ca-cert-files", lab.paths.hubble_ca_cert,
            "--tls-client-cert-file", cert, "--tls-client-key-file", key]


def _relay_nodes(lab: Lab) -> dict[str, int]:
    with grpc.insecure_channel(f"unix://{lab.paths.run_dir}/relay.sock") as channel:
        nodes = observer_pb2_grpc.ObserverStub(channel).GetNodes(observer_pb2.GetNodesRequest(), timeout=10).nodes
    return {n.name: n.state for n in nodes}


def test_keys_are_root_only_and_sockets_local(lab: Lab) -> None:
    tls = lab.paths.tls_dir
    assert stat.S_IMODE(os.stat(tls).st_mode) == 0o700
    keys = [f for f in os.listdir(tls) if f.endswith(".key")]
    assert sorted(keys) == ["ca.key", "hubble-relay-client.key", "hubble-server-k8s-ctr.key",
                            "hubble-server-k8s-w1.key", "hubble-server-k8s-w2.key"]
    assert all(stat.S_IMODE(os.stat(f"{tls}/{k}").st_mode) == 0o600 for k in keys)
    for sock in ("relay.sock", "hubble-k8s-w1.sock", "metrics-k8s-w1.sock"):
        assert stat.S_IMODE(os.stat(f"{lab.paths.run_dir}/{sock}").st_mode) == 0o660, sock


def test_world_cannot_read_flows_without_a_lab_certificate(lab: Lab, pods: dict, foreign: dict[str, str]) -> None:
    # Any gRPC client: plaintext, TLS without a client certificate, another CA's client certificate.
    assert _raw(lab) == "UNAVAILABLE"
    assert _raw(lab, lab.paths.hubble_ca_cert) == "UNAVAILABLE"
    assert _raw(lab, lab.paths.hubble_ca_cert, foreign["cert"], foreign["key"]) == "UNAVAILABLE"
    # membrane observe: a one-line error naming what is missing, never a traceback.
    plain = _observe_from_world(lab)
    assert plain.returncode == 1 and plain.stdout == ""
    assert plain.stderr.strip().count("\n") == 0 and "Traceback" not in plain.stderr
    assert "does not accept plaintext" in plain.stderr and "--tls-client-cert-file" in plain.stderr
    other = _observe_from_world(lab, "--tls", "--tls-ca-cert-files", lab.paths.hubble_ca_cert,
                                "--tls-client-cert-file", foreign["cert"], "--tls-client-key-file", foreign["key"])
    assert other.returncode == 1 and other.stdout == "" and "Traceback" not in other.stderr
    assert "refused our client certificate" in other.stderr, other.stderr


def test_world_reads_flows_with_the_lab_certificates(lab: Lab, pods: dict) -> None:
    cert, key = lab.paths.hubble_relay_client_pair
    assert _raw(lab, lab.paths.hubble_ca_cert, cert, key) == "OK"
    got = _observe_from_world(lab, *_lab_tls_flags(lab), "--last", "50", "--print-node-name")
    assert got.returncode == 0, got.stderr
    assert "k8s-w1" in got.stdout and "default/tls-w1" in got.stdout


def test_relay_still_merges_every_node_over_mtls(lab: Lab, pods: dict) -> None:
    assert _relay_nodes(lab) == {"k8s-ctr": 1, "k8s-w1": 1, "k8s-w2": 1}  # NODE_CONNECTED
    out = lab.run("observe", "--last", "200", "--print-node-name", "--protocol", "icmp").stdout
    assert all(node in out for node in ("k8s-ctr", "k8s-w1", "k8s-w2")), out
    assert "mTLS" in Path(f"{lab.paths.log_dir}/relay.log").read_text()


def test_metrics_stay_plaintext_on_all_addresses_like_cilium(lab: Lab) -> None:
    got = _in_world(lab, "curl", "-s", "--max-time", "5", "http://192.168.10.101:9962/metrics")
    assert got.returncode == 0 and "hubble_flows_processed_total" in got.stdout


def test_agent_without_its_certificate_serves_no_tcp_not_plaintext(lab: Lab, pods: dict) -> None:
    cert, key = lab.paths.hubble_server_pair("k8s-w2")
    os.rename(key, f"{key}.away")
    try:
        lab.run("lab", "restart", "agent-k8s-w2", timeout=60)
        hubble = lab.wait_for(lambda: lab.agent_status("k8s-w2").get("hubble", {}).get("msg"), 60,
                              "the agent to report its Hubble listener problem")
        assert "TCP :4244 not served" in hubble and key in hubble
        refused = _in_world(lab, MEMBRANE, "--lab", lab.name, "observe", "--server", "192.168.10.102:4244")
        assert refused.returncode == 1 and "Connection refused" in refused.stderr
        lab.run("observe", "--node", "k8s-w2", "--last", "1")  # the local unix socket still serves
    finally:
        os.rename(f"{key}.away", key)
    lab.run("lab", "restart", "agent-k8s-w2", timeout=60)
    # The relay finds the restarted agent again within seconds (its reconnect backoff is capped).
    lab.wait_for(lambda: _relay_nodes(lab).get("k8s-w2") == 1, 45, "the relay to reconnect to k8s-w2")


@pytest.fixture(scope="module")
def plain_lab(lab_requirements: None) -> Iterator[Lab]:
    yield from make_lab("--set", "hubble.tls.enabled=false")


def test_opt_out_serves_plaintext_again(plain_lab: Lab) -> None:
    assert not os.path.exists(plain_lab.paths.tls_dir)
    assert _raw(plain_lab) == "OK"
    got = _observe_from_world(plain_lab, "--last", "5")
    assert got.returncode == 0, got.stderr
    assert _relay_nodes(plain_lab) == {"k8s-ctr": 1, "k8s-w1": 1, "k8s-w2": 1}
    assert "plaintext" in Path(f"{plain_lab.paths.log_dir}/relay.log").read_text()
