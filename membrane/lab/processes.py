"""Processes the lab starts: spawn detached, remember by PID and start time, stop only those.

A PID alone can be reused after a crash; a record keeps the process start time (field 22 of
``/proc/<pid>/stat``) so ``lab delete`` never signals a stranger that inherited the number.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass


@dataclass
class ProcRecord:
    pid: int
    start: int  # clock ticks since boot, from /proc/<pid>/stat

    def to_dict(self) -> dict[str, int]:
        return {"pid": self.pid, "start": self.start}

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> ProcRecord:
        return cls(int(data["pid"]), int(data["start"]))


def start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return None
    # comm may contain spaces; fields after the closing paren are fixed.
    rest = stat[stat.rfind(")") + 2 :].split()
    return int(rest[19])


def is_alive(rec: ProcRecord) -> bool:
    return proc_state(rec) not in ("", "Z")


def proc_state(rec: ProcRecord) -> str:
    """``/proc`` state letter of the recorded process (``R``, ``S``, ``T`` stopped, ``Z``…), "" if it is gone
    (or the PID now belongs to another process). One read of ``stat``: the lab kubelet asks this for every
    container on every pass."""
    try:
        with open(f"/proc/{rec.pid}/stat") as fh:
            rest = fh.read().rsplit(")", 1)[1].split()  # comm may contain spaces; fields after it are fixed
    except OSError:
        return ""
    try:
        return rest[0] if int(rest[19]) == rec.start else ""
    except (IndexError, ValueError):
        return ""


# Spawned children not reaped yet, held here so that ``subprocess`` does not track them: a Popen dropped
# while its child runs joins ``subprocess._active``, which every later Popen polls one by one (O(n) per
# process started; with 300 pods' pause and container processes, a tenth of the lab kubelet's CPU).
# ``_reap`` forgets them once reaped.
_children: dict[int, subprocess.Popen[bytes]] = {}


def spawn(argv: list[str], log_path: str, env: dict[str, str] | None = None, cwd: str | None = None,
          pass_fds: tuple[int, ...] = ()) -> ProcRecord:
    """Start a daemon in its own session (so a terminal's ^C does not reach it), output to log_path;
    ``pass_fds``: descriptors it inherits (every other one is closed)."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
            pass_fds=pass_fds,
        )
    stale = _children.get(proc.pid)
    if stale is not None and stale.returncode is None:
        # The PID was reaped outside ``_reap`` and reused: the old object must not poll the new process.
        stale.returncode = 0
    _children[proc.pid] = proc
    st = start_time(proc.pid)
    return ProcRecord(proc.pid, st if st is not None else 0)


def stop(rec: ProcRecord, timeout: float = 5.0) -> None:
    """SIGTERM, wait, then SIGKILL — only if the PID still belongs to the process we started."""
    if not is_alive(rec):
        _reap(rec.pid)
        return
    _signal(rec.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(rec.pid)
        if not is_alive(rec):
            return
        time.sleep(0.05)
    if is_alive(rec):
        _signal(rec.pid, signal.SIGKILL)
        for _ in range(100):
            _reap(rec.pid)
            if not is_alive(rec):
                return
            time.sleep(0.02)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child, or reaped already
        done = pid
    except OSError:
        return
    if done == pid:
        _children.pop(pid, None)


def pids_in_netns(netns_paths: list[str]) -> list[int]:
    """Every process whose network namespace is one of the given ones (found through /proc)."""
    inodes = set()
    for path in netns_paths:
        try:
            inodes.add(os.stat(path).st_ino)
        except OSError:
            continue
    if not inodes:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                found.append(int(entry))
        except OSError:
            continue
    return found


def pids_with_arg(fragment: str) -> list[int]:
    """Processes whose command line contains fragment (the lab's own run directory)."""
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ")
        except OSError:
            continue
        if fragment.encode() in cmd:
            found.append(int(entry))
    return found


def stop_pids(pids: list[int], timeout: float = 3.0) -> None:
    """Stop processes found by namespace or run-dir search, each pinned by its current start time."""
    recs = [ProcRecord(pid, st) for pid in pids if (st := start_time(pid)) is not None]
    for rec in recs:
        _signal(rec.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(is_alive(r) for r in recs):
        for rec in recs:
            _reap(rec.pid)
        time.sleep(0.05)
    for rec in recs:
        if is_alive(rec):
            _signal(rec.pid, signal.SIGKILL)
            _reap(rec.pid)
