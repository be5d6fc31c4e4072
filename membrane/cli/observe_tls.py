"""``membrane observe``'s TLS flags, named as the hubble CLI names them, and a one-line reason when a
server cannot be reached.

``--tls --tls-ca-cert-files CA[,CA…] --tls-client-cert-file CERT --tls-client-key-file KEY
[--tls-server-name NAME]``. A lab's files are in ``/run/membrane/<lab>/tls/`` (``ca.crt`` and the
relay's ``hubble-relay-client.crt``/``.key``).
"""

from __future__ import annotations

import argparse
import socket
import ssl
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # grpc is imported only when a command talks to a server
    from membrane.hubbleserver.tls import ClientTLS

_PROBE_TIMEOUT = 2.0


class TLSFlagError(Exception):
    pass


def add_flags(group: Any) -> None:
    group.add_argument("--tls", action="store_true", help="connect to the server with TLS")
    group.add_argument("--tls-ca-cert-files", action="append", default=[], metavar="FILES",
                       help="CA certificates to verify the server with (comma-separated or repeated)")
    group.add_argument("--tls-client-cert-file", default="", metavar="FILE",
                       help="client certificate for mutual TLS")
    group.add_argument("--tls-client-key-file", default="", metavar="FILE", help="key of the client certificate")
    group.add_argument("--tls-server-name", default="", metavar="NAME",
                       help="name to verify the server certificate against (default: the server's host)")


def client_tls(args: argparse.Namespace, target: str) -> ClientTLS | None:
    """The TLS settings of the command line, or None for plaintext; TLSFlagError on a bad combination."""
    ca_files = tuple(f.strip() for value in args.tls_ca_cert_files for f in value.split(",") if f.strip())
    extra = [flag for flag, value in (("--tls-ca-cert-files", ca_files),
                                      ("--tls-client-cert-file", args.tls_client_cert_file),
                                      ("--tls-client-key-file", args.tls_client_key_file),
                                      ("--tls-server-name", args.tls_server_name)) if value]
    if not args.tls:
        if extra:
            raise TLSFlagError(f"{extra[0]} needs --tls")
        return None
    if target.startswith("unix:"):
        raise TLSFlagError("--tls applies to host:port servers; unix sockets are local and plaintext")
    from membrane.hubbleserver.tls import ClientTLS

    return ClientTLS(ca_files, args.tls_client_cert_file, args.tls_client_key_file, args.tls_server_name)


def _host_port(target: str) -> tuple[str, int] | None:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def tls_hint(lab: str) -> str:
    """Where a lab keeps the Hubble client files (nothing to add for other clusters)."""
    from membrane.cli.target import target

    try:
        run_dir = target(lab).run_dir
    except Exception:
        return ""
    return f"; the lab's are in {run_dir}/tls/" if run_dir else ""


def explain_failure(target: str, tls: ClientTLS | None, lab: str) -> str:
    """Why a TCP server could not be used: nothing listening, plaintext refused, or the TLS handshake's
    own reason (found with a direct handshake using the same files)."""
    where = f"cannot connect to the Hubble server at {target}"
    addr = _host_port(target)
    if addr is None:
        return where
    try:
        sock = socket.create_connection(addr, timeout=_PROBE_TIMEOUT)
    except OSError as exc:
        return f"{where}: {exc.strerror or exc}"
    with sock:
        if tls is None:
            return (f"{where}: it does not accept plaintext (Hubble requires mutual TLS on this port: "
                    f"use --tls --tls-ca-cert-files --tls-client-cert-file --tls-client-key-file"
                    f"{tls_hint(lab)})")
        return f"{where}: TLS: {_handshake_error(sock, addr[0], tls)}"


def _handshake_error(sock: socket.socket, host: str, tls: ClientTLS) -> str:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.set_alpn_protocols(["h2"])
    try:
        for ca_file in tls.ca_files:
            ctx.load_verify_locations(cafile=ca_file)
        if tls.cert_file:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError, ValueError) as exc:
        return f"cannot use the certificate files: {exc}"
    try:
        with ctx.wrap_socket(sock, server_hostname=tls.server_name or host) as conn:
            # With TLS 1.3 a server judges the client certificate after the handshake: it hangs up
            # (or sends an alert) instead of its first HTTP/2 frame.
            conn.settimeout(_PROBE_TIMEOUT)
            first = conn.recv(1)
    except ssl.SSLCertVerificationError as exc:
        return f"the server's certificate is not trusted: {exc.verify_message}"
    except ssl.SSLError as exc:
        first = b""
        if not any(w in (exc.reason or "").upper() for w in ("CERTIFICATE", "UNKNOWN_CA", "EOF")):
            return (exc.reason or str(exc)).lower()
    except OSError:
        first = b""
    if first:
        return "the handshake succeeds but gRPC does not (check --tls-server-name)"
    if not tls.cert_file:
        return "the server requires a client certificate (--tls-client-cert-file, --tls-client-key-file)"
    return "the server refused our client certificate (is it issued by the server's Hubble CA?)"
