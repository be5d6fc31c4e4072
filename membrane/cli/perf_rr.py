"""A 1-byte TCP request/response pair (netperf's TCP_RR) for ``membrane connectivity perf``, run inside
pod namespaces as ``python -m membrane.cli.perf_rr server PORT`` / ``client HOST PORT SECONDS``.

It is Python on both ends, so its transactions per second measure the path *and* the interpreter: use
it to compare paths with each other (pod-to-pod vs pod-to-service, same node vs other node), not with
netperf figures. The client prints ``<transactions> <seconds>``.
"""

from __future__ import annotations

import socket
import sys
import threading
import time


def _serve_one(conn: socket.socket) -> None:
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while conn.recv(1):
            conn.sendall(b"r")


def server(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(16)
        while True:
            conn, _ = s.accept()
            threading.Thread(target=_serve_one, args=(conn,), daemon=True).start()


def client(host: str, port: int, seconds: float) -> tuple[int, float]:
    with socket.create_connection((host, port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        count = 0
        start = time.monotonic()
        end = start + seconds
        while time.monotonic() < end:
            s.sendall(b"q")
            if not s.recv(1):
                break
            count += 1
        return count, time.monotonic() - start


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]))
    else:
        n, took = client(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        print(n, f"{took:.6f}")
