"""Hubble's Observer API over TCP with mutual TLS, on 127.0.0.1 without root: the server refuses
plaintext, a client without a certificate and one with another CA's certificate; the relay dials it
with mTLS; ``membrane observe`` needs the hubble CLI's TLS flags and fails in one line without them."""

from __future__ import annotations

import argparse
import io
import os
import stat
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path

import grpc
import pytest

from membrane.cli import observe
from membrane.cli.arguments import CLIError
from membrane.hubble.proto.observer import observer_pb2, observer_pb2_grpc
from membrane.hubble.ring import FlowRing
from membrane.hubbleserver.certs import RELAY_CLIENT_NAME, CertificateAuthority, server_name, server_wildcard
from membrane.hubbleserver.observer import ObserverServer
from membrane.hubbleserver.relay import Peer, Relay
from membrane.hubbleserver.tls import ClientTLS, ServerTLS, TLSConfigError
from tests.unit.test_hubble_server import make_flow


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("pki")
    ca, other = CertificateAuthority.create(), CertificateAuthority.create()
    server = ca.issue_server(server_wildcard("default"), [server_wildcard("default"), server_name("n1", "default")],
                             ["127.0.0.1"])
    client, foreign = ca.issue_client(RELAY_CLIENT_NAME), other.issue_client(RELAY_CLIENT_NAME)
    files = {"ca.crt": ca.cert_pem, "other-ca.crt": other.cert_pem, "server.crt": server.cert_pem,
             "server.key": server.key_pem, "client.crt": client.cert_pem, "client.key": client.key_pem,
             "foreign.crt": foreign.cert_pem, "foreign.key": foreign.key_pem}
    for name, data in files.items():
        (d / name).write_bytes(data)
    return {name: str(d / name) for name in files}


@pytest.fixture(scope="module")
def server(pki: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ObserverServer, str]]:
    ring = FlowRing(15)
    for i in range(3):
        ring.append(make_flow(i, "n1", "pod", 80))
    sock = tmp_path_factory.mktemp("sock") / "hubble.sock"
    creds = ServerTLS(pki["server.crt"], pki["server.key"], pki["ca.crt"]).credentials()
    srv = ObserverServer(ring, "n1", str(sock), "127.0.0.1:0", tcp_credentials=creds)
    srv.start()
    yield srv, str(sock)
    srv.stop(0)


def _status(channel: grpc.Channel) -> observer_pb2.ServerStatusResponse:
    return observer_pb2_grpc.ObserverStub(channel).ServerStatus(observer_pb2.ServerStatusRequest(), timeout=3)


def test_mtls_client_is_served(pki: dict[str, str], server: tuple[ObserverServer, str]) -> None:
    srv, _ = server
    tls = ClientTLS([pki["ca.crt"]], pki["client.crt"], pki["client.key"], server_name("n1", "default"))
    with tls.channel(f"127.0.0.1:{srv.tcp_port}") as channel:
        assert _status(channel).num_flows == 3


@pytest.mark.parametrize("client", ["plaintext", "no client certificate", "another CA's certificate"])
def test_tcp_refuses_everyone_else(pki: dict[str, str], server: tuple[ObserverServer, str], client: str) -> None:
    srv, _ = server
    target = f"127.0.0.1:{srv.tcp_port}"
    if client == "plaintext":
        channel = grpc.insecure_channel(target)
    elif client == "no client certificate":
        channel = ClientTLS([pki["ca.crt"]]).channel(target)
    else:
        channel = ClientTLS([pki["ca.crt"]], pki["foreign.crt"], pki["foreign.key"]).channel(target)
    with channel, pytest.raises(grpc.RpcError) as err:
        _status(channel)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_unix_socket_stays_local_plaintext_0660(server: tuple[ObserverServer, str]) -> None:
    _, sock = server
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660
    with grpc.insecure_channel(f"unix:{sock}") as channel:
        assert _status(channel).num_flows == 3


def test_relay_dials_peers_with_mtls(pki: dict[str, str], server: tuple[ObserverServer, str], tmp_path: Path) -> None:
    srv, _ = server
    peers = [Peer("n1", f"127.0.0.1:{srv.tcp_port}", server_name("n1", "default"))]
    good = Relay(peers, str(tmp_path / "relay.sock"), tls=ClientTLS([pki["ca.crt"]], pki["client.crt"], pki["client.key"]))
    bad = Relay(peers, str(tmp_path / "relay-bad.sock"), timeout=2.0)  # no TLS: the node refuses it
    for relay in (good, bad):
        relay.start()
    try:
        with grpc.insecure_channel(f"unix:{tmp_path}/relay.sock") as channel:
            st = _status(channel)
            assert st.num_connected_nodes.value == 1 and st.num_flows == 3
        with grpc.insecure_channel(f"unix:{tmp_path}/relay-bad.sock") as channel:
            st = _status(channel)
            assert st.num_unavailable_nodes.value == 1 and list(st.unavailable_nodes) == ["n1"]
    finally:
        for relay in (good, bad):
            relay.stop(0)


def test_client_tls_file_errors_are_one_line(pki: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(TLSConfigError, match="No such file"):
        ClientTLS([str(tmp_path / "missing.crt")]).credentials()
    with pytest.raises(TLSConfigError, match="needs its key"):
        ClientTLS([pki["ca.crt"]], pki["client.crt"]).credentials()
    (tmp_path / "junk.crt").write_text("junk")
    with pytest.raises(TLSConfigError, match="not a PEM"):
        ClientTLS([str(tmp_path / "junk.crt")]).credentials()


def _observe(*argv: str) -> str:
    parser = argparse.ArgumentParser()
    observe.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["observe", *argv])
    args.lab = "membrane"
    out = io.StringIO()
    with redirect_stdout(out):
        assert observe.run(args) == 0
    return out.getvalue()


def test_observe_with_the_hubble_cli_tls_flags(pki: dict[str, str], server: tuple[ObserverServer, str]) -> None:
    srv, _ = server
    out = _observe("--server", f"127.0.0.1:{srv.tcp_port}", "--tls", "--tls-ca-cert-files", pki["ca.crt"],
                   "--tls-client-cert-file", pki["client.crt"], "--tls-client-key-file", pki["client.key"])
    assert len(out.splitlines()) == 3


@pytest.mark.parametrize(("flags", "message"), [
    ((), "does not accept plaintext (Hubble requires mutual TLS"),
    (("--tls", "--tls-ca-cert-files", "{ca.crt}"), "the server requires a client certificate"),
    (("--tls", "--tls-ca-cert-files", "{ca.crt}", "--tls-client-cert-file", "{foreign.crt}",
      "--tls-client-key-file", "{foreign.key}"), "the server refused our client certificate"),
    (("--tls", "--tls-ca-cert-files", "{other-ca.crt}", "--tls-client-cert-file", "{client.crt}",
      "--tls-client-key-file", "{client.key}"), "the server's certificate is not trusted"),
    (("--tls-client-cert-file", "{client.crt}"), "--tls-client-cert-file needs --tls"),
    (("--tls", "--tls-ca-cert-files", "/nonexistent/ca.crt"), "CA certificate /nonexistent/ca.crt"),
])
def test_observe_without_the_right_flags_fails_in_one_line(
        pki: dict[str, str], server: tuple[ObserverServer, str], flags: tuple[str, ...], message: str) -> None:
    srv, _ = server
    argv = [pki[f[1:-1]] if f.startswith("{") else f for f in flags]
    with pytest.raises(CLIError) as err:
        _observe("--server", f"127.0.0.1:{srv.tcp_port}", "--timeout", "3", *argv)
    assert message in str(err.value) and "\n" not in str(err.value)
