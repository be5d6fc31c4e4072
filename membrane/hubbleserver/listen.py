"""Starting a gRPC server on a unix socket and/or a TCP address, with the standard health
service registered.

The unix socket is the local door (mode 0660: root and its group, as Cilium's hubble.sock); the TCP
address is the remote one and takes server credentials: with Hubble's mTLS, a client must present a
certificate issued by the cluster's Hubble CA (see :mod:`membrane.hubbleserver.tls`).
"""

from __future__ import annotations

import os
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

# The name Hubble's servers mark SERVING and `hubble status` checks; the gRPC service's own name too.
HEALTH_SERVICE = "hubble.server.Observer"
OBSERVER_SERVICE = "observer.Observer"
SOCKET_MODE = 0o660


def unix_target(path_or_target: str) -> str:
    """A socket path becomes `unix:<path>`; gRPC targets pass through."""
    return f"unix:{path_or_target}" if path_or_target.startswith("/") else path_or_target


def build_server(
    unix_socket_path: str | os.PathLike[str] | None, tcp_addr: str | None, max_workers: int,
    tcp_credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.Server, health.HealthServicer, int | None]:
    """A server bound to the given addresses (not started) and its health servicer; returns the
    bound TCP port (useful with `host:0`). With ``tcp_credentials`` the TCP port speaks TLS only."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="hubble"))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if unix_socket_path is not None:
        path = Path(unix_socket_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_socket():
            path.unlink()
        server.add_insecure_port(f"unix:{path}")
        os.chmod(path, SOCKET_MODE)  # gRPC binds at add_*_port; nobody outside root's group may connect
    port = None
    if tcp_addr:
        port = (server.add_secure_port(tcp_addr, tcp_credentials) if tcp_credentials is not None
                else server.add_insecure_port(tcp_addr))
    return server, health_servicer, port


def mark_serving(health_servicer: health.HealthServicer) -> None:
    for name in ("", HEALTH_SERVICE, OBSERVER_SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
