"""The world's HTTPS server: port 443 of every world address, the same answers as its HTTP server.

It exists so that TLS policy (``serverNames``, the SNI proxy) meets real TLS clients (curl, openssl
s_client) in the lab. The certificate is made when the server starts: a throw-away CA issues one
server certificate naming every world name and address; the CA key is never written anywhere and
the server's key only lives in a temporary file while the ssl module loads it. Clients therefore
use ``curl -k`` (or trust nothing): what the lab tests is who may connect, not the PKI.

Run inside the world namespace: ``python -m membrane.lab.world_tls --port 443``.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import tempfile
from collections.abc import Sequence

HTTPS_PORT = 443


def server_context(names: Sequence[str], addresses: Sequence[str]) -> ssl.SSLContext:
    """A server SSLContext with a fresh certificate for ``names`` and ``addresses``."""
    from membrane.hubbleserver.certs import CertificateAuthority

    issued = CertificateAuthority.create("membrane lab world CA").issue_server(names[0], names, addresses)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
        with open(cert, "wb") as fh:
            fh.write(issued.cert_pem)
        with open(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as fh:
            fh.write(issued.key_pem)
        ctx.load_cert_chain(cert, key)
    return ctx


class TLSListener:
    """A listening socket whose accepted connections are TLS; the handshake runs in the connection's
    own thread (on its first read), so a slow or broken client never holds up ``accept``."""

    def __init__(self, sock: socket.socket, ctx: ssl.SSLContext) -> None:
        self.sock, self.ctx = sock, ctx

    def accept(self) -> tuple[ssl.SSLSocket, object]:
        conn, addr = self.sock.accept()
        return self.ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False), addr


def serve_https(port: int) -> None:
    from membrane.lab.workloads import httpcore, runtime
    from membrane.lab.world import WORLD_NAMES, caller_response

    def handle(req: httpcore.Request) -> httpcore.Response:
        ctype, body = caller_response(req.path, req.client[0], req.host)
        return httpcore.text(body, content_type=ctype)

    ctx = server_context(list(WORLD_NAMES), sorted(set(WORLD_NAMES.values())))
    listener = TLSListener(httpcore.open_tcp_listener(port, "0.0.0.0"), ctx)
    runtime.run_until_terminated([lambda: httpcore.serve(listener, handle, server="membrane-world")])  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="membrane.lab.world_tls", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=HTTPS_PORT)
    serve_https(p.parse_args(argv).port)


if __name__ == "__main__":
    main()
