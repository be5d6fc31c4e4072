"""A throwaway etcd for tests: unique temp dir, unix socket, started by Popen and killed by its PID.

Use the module-scoped fixture from any test module::

    from tests.etcd_fixture import etcd_server  # noqa: F401  (pytest finds it by name)

    def test_x(etcd_server):
        client = EtcdClient(etcd_server.endpoint)

or the context manager ``running_etcd()`` outside pytest. ``EtcdServer.stop()`` / ``start()``
restart etcd on the same data dir and socket (to test reconnects). The module is skipped with a
clear reason when etcd is not installed (``make deps`` installs etcd-server).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

from membrane.store.errors import StoreError
from membrane.store.etcd import EtcdClient

ETCD_BIN = "/usr/bin/etcd"
SOCKET_NAME = "etcd.sock:2379"
PEER_SOCKET_NAME = "peer.sock:2380"


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def etcd_missing_reason() -> str:
    """Why etcd tests cannot run here, or "" if they can."""
    if not os.access(ETCD_BIN, os.X_OK):
        return f"{ETCD_BIN} not found (apt-get install etcd-server, or `make deps`)"
    return ""


class EtcdServer:
    """One single-member etcd listening on ``unix://<tmpdir>/etcd.sock:2379``."""

    def __init__(self, extra_args: list[str] | None = None, tcp: bool = False) -> None:
        """``tcp=True`` serves clients on a free 127.0.0.1 port instead of the unix socket."""
        # Short absolute paths: a unix socket path must stay under 108 bytes.
        self.dir = tempfile.mkdtemp(prefix="mbr-etcd-", dir="/tmp")
        self.data_dir = os.path.join(self.dir, "data")
        self.socket_path = os.path.join(self.dir, SOCKET_NAME)
        self.client_url = f"unix://{SOCKET_NAME}"
        self.endpoint = f"unix://{self.socket_path}"
        if tcp:
            self.client_url = self.endpoint = f"http://127.0.0.1:{_free_loopback_port()}"
        self.log_path = os.path.join(self.dir, "etcd.log")
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        if self.proc is not None:
            raise RuntimeError("etcd already running")
        for name in (SOCKET_NAME, PEER_SOCKET_NAME):  # left behind by a SIGKILL
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.dir, name))
        cmd = [
            ETCD_BIN, "--name", "n", "--data-dir", self.data_dir,
            "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", f"unix://{PEER_SOCKET_NAME}",
            "--initial-advertise-peer-urls", f"unix://{PEER_SOCKET_NAME}",
            "--initial-cluster", f"n=unix://{PEER_SOCKET_NAME}",
            *self.extra_args,
        ]
        with open(self.log_path, "ab") as log:
            # cwd matters: etcd creates the unix socket files relative to it.
            self.proc = subprocess.Popen(cmd, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        client = EtcdClient(self.endpoint, timeout=1.0)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    code = self.proc.returncode
                    self.proc = None
                    raise RuntimeError(f"etcd exited with {code} while starting:\n{self.log_tail()}")
                try:
                    client.status()
                    client.put("/_fixture/ready", b"1")  # a leader exists and writes go through
                    return
                except StoreError:
                    if time.monotonic() > deadline:
                        self.stop(kill=True)
                        raise RuntimeError(f"etcd did not become ready in {timeout}s:\n{self.log_tail()}") from None
                    time.sleep(0.1)
        finally:
            client.close()

    def stop(self, kill: bool = False, timeout: float = 10.0) -> None:
        """Stop the etcd we started (by its PID only); SIGTERM, or SIGKILL with ``kill``."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def close(self) -> None:
        """Stop etcd and remove its directory (data, sockets, log)."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def running_etcd(extra_args: list[str] | None = None, tcp: bool = False) -> Iterator[EtcdServer]:
    server = EtcdServer(extra_args, tcp=tcp)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def etcd_server() -> Iterator[EtcdServer]:
    """A fresh etcd for one test module; skips the module if etcd is not installed."""
    reason = etcd_missing_reason()
    if reason:
        pytest.skip(reason)
    with running_etcd() as server:
        yield server
