"""gRPC credentials for Hubble's mTLS: the agent's server side (client certificates required) and the
relay's or CLI's client side, read from PEM files with one-line errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc


class TLSConfigError(Exception):
    """A certificate or key file is missing, unreadable or incomplete (the message names it)."""


def read_pem(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise TLSConfigError(f"{what} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise TLSConfigError(f"{what} {path}: not a PEM file")
    return data


@dataclass(frozen=True)
class ServerTLS:
    """An agent's Hubble server: its certificate and key, and the CA its clients must be issued by."""

    cert_file: str
    key_file: str
    client_ca_file: str

    def credentials(self) -> grpc.ServerCredentials:
        pair = (read_pem(self.key_file, "server key"), read_pem(self.cert_file, "server certificate"))
        return grpc.ssl_server_credentials(
            [pair], root_certificates=read_pem(self.client_ca_file, "client CA"), require_client_auth=True)


@dataclass(frozen=True)
class ClientTLS:
    """A client of Hubble's API over TLS: the CAs it trusts and, for mTLS, its certificate and key."""

    ca_files: Sequence[str] = ()
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""  # the name to verify instead of the target's host (--tls-server-name)

    def credentials(self) -> grpc.ChannelCredentials:
        if bool(self.cert_file) != bool(self.key_file):
            raise TLSConfigError("a client certificate needs its key and a key its certificate "
                                 "(--tls-client-cert-file with --tls-client-key-file)")
        roots = b"".join(read_pem(f, "CA certificate") for f in self.ca_files) or None
        if not self.cert_file:
            return grpc.ssl_channel_credentials(root_certificates=roots)
        return grpc.ssl_channel_credentials(
            root_certificates=roots,
            private_key=read_pem(self.key_file, "client key"),
            certificate_chain=read_pem(self.cert_file, "client certificate"),
        )

    def channel_options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []

    def channel(self, target: str, options: Sequence[tuple[str, int | str]] = ()) -> grpc.Channel:
        return grpc.secure_channel(target, self.credentials(), options=[*self.channel_options(), *options])
