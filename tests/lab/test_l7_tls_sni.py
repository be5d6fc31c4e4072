"""TLS SNI policy end to end on a lab: with ``serverNames: [one.one.one.one]`` on egress port 443, real
clients in a pod (curl, openssl s_client) reach the world's HTTPS server when their ClientHello names
one.one.one.one — whatever address they connect to, the name is what counts — and get a reset (curl:
exit 35, SSL connect error, as cilium-cli expects) for any other name; nothing is decrypted (the
server's own certificate reaches the client). Hubble shows
each verdict as an L7 flow."""

from __future__ import annotations

import json

import pytest

from membrane.lab.world import WORLD_NAMES
from tests.lab.harness import Lab

ONE, INFO = WORLD_NAMES["one.one.one.one"], WORLD_NAMES["ipinfo.io"]

PODS = """
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  nodeName: k8s-w1
  containers: [{name: c, image: nicolaka/netshoot, command: [sleep, infinity]}]
"""

POLICY = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: sni}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
    - toPorts:
        - ports: [{port: "443", protocol: TCP}]
          serverNames: [one.one.one.one]
"""


@pytest.fixture(scope="module")
def client(lab: Lab) -> dict:
    lab.apply(PODS)
    pods = lab.wait_pods_ready(["client"])
    proc = lab.apply(POLICY)
    assert "Warning" not in proc.stderr, proc.stderr  # serverNames alone are enforced now
    lab.wait_for(lambda: _curl(lab, "one.one.one.one", ONE)[0] == 0, 30, "the SNI redirect to be in place")
    return pods["client"]


def _curl(lab: Lab, name: str, ip: str, port: int = 443) -> tuple[int, str, str]:
    scheme = "https" if port == 443 else "http"
    out = lab.exec("client", "curl", "-sS", "-k", "--connect-timeout", "3", "--max-time", "5",
                   "--resolve", f"{name}:{port}:{ip}", f"{scheme}://{name}:{port}/", check=False)
    return out.returncode, out.stdout, out.stderr


def test_a_listed_name_reaches_the_server_as_the_pods_traffic(lab: Lab, client: dict) -> None:
    code, body, err = _curl(lab, "one.one.one.one", ONE)
    assert code == 0, err
    # the world sees what it sees of any pod traffic: the pod's address masqueraded to its node's
    node = next(n for n in lab.get_json("nodes") if n["metadata"]["name"] == "k8s-w1")
    internal = {a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"}
    assert json.loads(body)["host"] == "one.one.one.one" and json.loads(body)["ip"] in internal, body


def test_another_name_gets_an_ssl_connect_error(lab: Lab, client: dict) -> None:
    code, _body, err = _curl(lab, "ipinfo.io", INFO)
    assert code == 35, (code, err)


def test_the_name_decides_not_the_address(lab: Lab, client: dict) -> None:
    assert _curl(lab, "one.one.one.one", INFO)[0] == 0
    assert _curl(lab, "ipinfo.io", ONE)[0] == 35


def test_other_ports_stay_default_denied(lab: Lab, client: dict) -> None:
    code, _body, _err = _curl(lab, "one.one.one.one", ONE, port=80)
    assert code == 28  # timeout: dropped by the datapath, not the proxy


def test_openssl_s_client_sees_the_servers_own_certificate(lab: Lab, client: dict) -> None:
    ok = lab.exec("client", "sh", "-c", f"openssl s_client -connect {ONE}:443 -servername one.one.one.one "
                  "</dev/null 2>&1 | openssl x509 -noout -subject", check=False)
    assert "one.one.one.one" in ok.stdout, ok.stdout + ok.stderr  # end-to-end TLS: the world's certificate
    denied = lab.exec("client", "sh", "-c", f"openssl s_client -connect {ONE}:443 -servername ipinfo.io "
                      "</dev/null 2>&1", check=False)
    assert "BEGIN CERTIFICATE" not in denied.stdout and "errno=104" in denied.stdout, denied.stdout


def test_hubble_shows_both_verdicts(lab: Lab, client: dict) -> None:
    _curl(lab, "ipinfo.io", INFO)
    compact = lab.run("observe", "--node", "k8s-w1", "--type", "l7", "--last", "200").stdout
    assert any("DROPPED" in ln and "TLS SNI ipinfo.io" in ln for ln in compact.splitlines()), compact[-2000:]
    assert any("FORWARDED" in ln and "TLS SNI one.one.one.one" in ln for ln in compact.splitlines()), compact[-2000:]
