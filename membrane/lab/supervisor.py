"""Keep one lab daemon running, as systemd (``Restart=always``) or a DaemonSet would.

``python -m membrane.lab.supervisor --state FILE [--remove PATH]... [--health-socket SOCK] -- ARGV...``
starts ARGV, waits for it and starts it again after it exits, with exponential backoff
(``restart_delay``). With ``--health-socket`` it is also a liveness probe: a daemon that does not
answer ``GET /healthz`` on that unix socket for ``LIVENESS_FAILURES`` probes in a row (hung, or
SIGSTOPped) is killed and restarted, as the kubelet does with Cilium's agent.

The state file (JSON, written atomically) is what ``lab status`` shows and what tests use to find
the daemon's PID: ``{"pid", "start", "restarts", "state", "last_exit", "last_exit_time"}``. SIGTERM
stops the daemon (SIGTERM, then SIGKILL after ``STOP_TIMEOUT``) and the supervisor with it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from membrane.lab.processes import ProcRecord, start_time

BACKOFF_BASE = 1.0  # seconds before the first restart
BACKOFF_MAX = 30.0
RESET_AFTER = 60.0  # a run at least this long starts the backoff over
STOP_TIMEOUT = 4.0  # below processes.stop's 5 s, so the supervisor outlives its daemon
PROBE_INTERVAL = 10.0
PROBE_TIMEOUT = 5.0
LIVENESS_FAILURES = 3


def restart_delay(consecutive: int, ran_for: float) -> float:
    """Seconds to wait before restart number ``consecutive`` (0-based) of a daemon that ran ``ran_for``."""
    if ran_for >= RESET_AFTER:
        return BACKOFF_BASE
    return min(BACKOFF_BASE * 2 ** max(consecutive, 0), BACKOFF_MAX)


def describe_exit(returncode: int) -> str:
    """``exit code 1`` / ``signal KILL`` (Popen's negative return codes are signals)."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name.removeprefix('SIG')}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


@dataclass
class SupervisedState:
    pid: int = 0
    start: int = 0
    restarts: int = 0
    state: str = "starting"  # running | backoff | stopped
    last_exit: str = ""
    last_exit_time: float = 0.0

    @property
    def record(self) -> ProcRecord | None:
        return ProcRecord(self.pid, self.start) if self.pid else None

    def save(self, path: str) -> None:
        tmp = f"{path}.tmp"
        with open(tmp, "w") as fh:
            json.dump(asdict(self), fh)
        os.replace(tmp, path)


def read_state(path: str) -> SupervisedState | None:
    try:
        with open(path) as fh:
            data: dict[str, Any] = json.load(fh)
    except (OSError, ValueError):
        return None
    fields = SupervisedState.__dataclass_fields__
    return SupervisedState(**{k: v for k, v in data.items() if k in fields})


def _healthy(socket_path: str) -> bool:
    from membrane.api.unixhttp import APIError, request_json

    try:
        request_json(socket_path, "GET", "/healthz", timeout=PROBE_TIMEOUT)
        return True
    except APIError:
        return True  # it answered: alive (readiness is not liveness)
    except OSError:
        return False


class Supervisor:
    def __init__(self, argv: list[str], state_path: str, remove: list[str], health_socket: str = "") -> None:
        self.argv = argv
        self.state_path = state_path
        self.remove = remove
        self.health_socket = health_socket
        self.state = read_state(state_path) or SupervisedState()
        self.stopping = threading.Event()
        self.child: subprocess.Popen[bytes] | None = None

    def run(self) -> int:
        consecutive = 0
        while not self.stopping.is_set():
            started = time.monotonic()
            code = self._run_once()
            self.state.last_exit = describe_exit(code)
            self.state.last_exit_time = time.time()
            if self.stopping.is_set():
                break
            ran = time.monotonic() - started
            consecutive = 0 if ran >= RESET_AFTER else consecutive
            delay = restart_delay(consecutive, ran)
            consecutive += 1
            self.state.state = "backoff"
            self.state.save(self.state_path)
            if self.stopping.wait(delay):
                break
            self.state.restarts += 1
        self.state.state = "stopped"
        self.state.pid = 0
        self.state.save(self.state_path)
        return 0

    def _run_once(self) -> int:
        for path in self.remove:  # e.g. the unix sockets a killed etcd leaves behind
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self.child = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, close_fds=True)
        self.state.pid = self.child.pid
        self.state.start = start_time(self.child.pid) or 0
        self.state.state = "running"
        self.state.save(self.state_path)
        failures = 0
        next_probe = time.monotonic() + PROBE_INTERVAL * 2  # let it start
        while True:
            try:
                return self.child.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
            if self.stopping.is_set():
                return self._terminate()
            if self.health_socket and time.monotonic() >= next_probe:
                next_probe = time.monotonic() + PROBE_INTERVAL
                failures = 0 if _healthy(self.health_socket) else failures + 1
                if failures >= LIVENESS_FAILURES:
                    print(f"supervisor: {self.argv[0]} (pid {self.child.pid}) failed {failures} liveness probes; "
                          "killing it", flush=True)
                    self.child.kill()  # SIGKILL also ends a SIGSTOPped process

    def _terminate(self) -> int:
        assert self.child is not None
        self.child.terminate()
        try:
            return self.child.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.child.kill()
            return self.child.wait()

    def stop(self, *_: object) -> None:
        self.stopping.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="membrane-supervisor")
    parser.add_argument("--state", required=True)
    parser.add_argument("--remove", action="append", default=[])
    parser.add_argument("--health-socket", default="")
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        parser.error("no command to supervise")
    sup = Supervisor(cmd, args.state, args.remove, args.health_socket)
    signal.signal(signal.SIGTERM, sup.stop)
    signal.signal(signal.SIGINT, sup.stop)
    return sup.run()


if __name__ == "__main__":
    raise SystemExit(main())
