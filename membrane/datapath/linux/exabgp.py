"""A node's BGP speaker: one ExaBGP process, started, fed and restarted by the agent.

ExaBGP (PyPI ``exabgp``, pinned in pyproject) runs as the agent's child in the node's network
namespace, with a config from membrane.bgp.exabgp_text and one API process, the bridge
(membrane.datapath.linux.exabgp_bridge): the agent writes ``announce``/``withdraw`` lines into the
bridge's FIFO, the bridge hands them to ExaBGP and writes the peers' session states to a JSON file.

``configure`` (re)starts the speaker when its config text changes; ``ensure_running`` restarts it when
it died, counting restarts and keeping the last exit status for ``membrane status``; ``advertise``
sends only the difference from what the running speaker was last given (a fresh process starts
from nothing). The speaker never takes the agent down: every failure here is logged and reported,
and retried on the next sync.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

from membrane.bgp.exabgp_text import Advertised, commands

log = logging.getLogger(__name__)
EXABGP = os.path.join(os.path.dirname(sys.executable), "exabgp")


class ExaBGPSpeaker:
    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self.conf_path = f"{run_dir}/exabgp.conf"
        self.fifo = f"{run_dir}/commands.fifo"
        self.state_path = f"{run_dir}/peers.json"
        self.log_path = f"{run_dir}/exabgp.log"
        self.pid_path = f"{run_dir}/exabgp.pid"
        self.listen = ""  # "ip:port" to accept sessions on (an instance's localPort); "": only initiate
        self.proc: subprocess.Popen[bytes] | None = None
        self.config_text = ""
        self.advertised: dict[str, dict[str, Any]] = {}
        self.restarts = 0
        self.last_exit = ""
        self.started_at = 0.0
        self.error = ""

    # ---- process -----------------------------------------------------------------------------------
    def process_cmd(self) -> list[str]:
        """The bridge command line for the config's ``process`` block."""
        return [sys.executable, "-m", "membrane.datapath.linux.exabgp_bridge", self.fifo, self.state_path]

    def configure(self, text: str, listen: str = "") -> None:
        if text == self.config_text and listen == self.listen:
            self.ensure_running()
            return
        self.config_text, self.listen = text, listen
        self.stop()
        if text:
            self._start()

    def _stop_stale(self) -> None:
        """Stop the speaker an earlier run of this agent started and could not stop (the agent was killed):
        the PID it wrote, if that process still runs ExaBGP with this node's config."""
        try:
            with open(self.pid_path) as fh:
                pid = int(fh.read().strip() or 0)
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read().split(b"\0")
        except (OSError, ValueError):
            return
        if self.conf_path.encode() not in cmdline or (self.proc is not None and self.proc.pid == pid):
            return
        log.warning("BGP: stopping the speaker a previous agent left running (pid %d)", pid)
        try:
            os.killpg(pid, signal.SIGKILL)  # its own session: ExaBGP and its bridge
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 3
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.05)  # until its BGP session is closed, so the new speaker's is the only one

    def _start(self) -> None:
        os.makedirs(self.run_dir, exist_ok=True)
        self._stop_stale()
        # A new FIFO for each speaker: a bridge still dying keeps only the old one, so no command is lost in it.
        try:
            os.unlink(self.fifo)
        except FileNotFoundError:
            pass
        os.mkfifo(self.fifo, 0o600)
        with open(self.conf_path, "w") as fh:
            fh.write(self.config_text)
        try:
            os.unlink(self.state_path)
        except FileNotFoundError:
            pass
        env = {**os.environ, "exabgp_daemon_user": "root", "exabgp_daemon_daemonize": "false",
               "exabgp_tcp_bind": self.listen.rpartition(":")[0], "exabgp_tcp_port": self.listen.rpartition(":")[2] or "179",
               "exabgp_api_cli": "false", "exabgp_api_terminate": "true",
               "exabgp_log_destination": self.log_path, "exabgp_log_short": "false",
               "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        with open(f"{self.run_dir}/exabgp.out", "ab") as out:
            self.proc = subprocess.Popen([EXABGP, "server", self.conf_path], stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=env, start_new_session=True)
        with open(self.pid_path, "w") as fh:
            fh.write(str(self.proc.pid))
        self.advertised = {}
        self.started_at = time.time()
        log.info("BGP speaker started (exabgp pid %d)", self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.alive() and self.proc is not None else 0

    def ensure_running(self) -> bool:
        """Start a speaker that should run but does not (it died, or could not start); True if started."""
        if not self.config_text or self.alive():
            return False
        if self.proc is not None:
            self.last_exit = f"exit status {self.proc.returncode} at {time.strftime('%H:%M:%S')}"
            self.restarts += 1
            log.warning("BGP speaker (pid %d) died (%s); restarting", self.proc.pid, self.last_exit)
            self.proc = None
        self._start()
        return True

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        self.advertised = {}
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group ExaBGP leads (it and its bridge); started by us
            proc.wait(timeout=5)

    # ---- routes ------------------------------------------------------------------------------------
    def advertise(self, desired: Advertised) -> bool:
        """Send the difference from what this speaker has; False (retried later) while its bridge is not up."""
        if not self.alive():
            return False
        lines = commands(self.advertised, desired)
        if lines:
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno in (errno.ENXIO, errno.ENOENT):
                    return False  # the bridge has not opened its end yet
                raise
            os.set_blocking(fd, True)
            try:
                os.write(fd, ("\n".join(lines) + "\n").encode())
            finally:
                os.close(fd)
        self.advertised = {peer: dict(routes) for peer, routes in desired.items()}
        return True

    def peer_states(self) -> dict[str, dict[str, Any]]:
        """Peer address -> {state, since, received}, as the bridge last wrote them."""
        try:
            with open(self.state_path) as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def status(self) -> dict[str, Any]:
        return {"pid": self.pid, "running": self.alive(), "restarts": self.restarts, "last-exit": self.last_exit,
                "started": self.started_at, "error": self.error}
