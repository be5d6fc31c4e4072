"""The lab kubelet's exit watch: a watched process's exit is reported once under its pod, a record whose
PID is gone or reused is not watched (the kubelet polls it instead), and a forgotten pod's descriptors
are closed. Real processes and pidfds; no root needed."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from membrane.lab.exit_watch import ExitWatch
from membrane.lab.processes import ProcRecord, start_time


def _sleeper() -> tuple[subprocess.Popen[bytes], ProcRecord]:
    proc = subprocess.Popen(["sleep", "30"])
    st = start_time(proc.pid)
    assert st is not None
    return proc, ProcRecord(proc.pid, st)


def _exited_within(watch: ExitWatch, seconds: float = 5) -> set[str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = watch.exited()
        if got:
            return got
        time.sleep(0.01)
    return set()


def test_an_exit_is_reported_once_under_its_owner() -> None:
    watch = ExitWatch()
    (a, rec_a), (b, rec_b) = _sleeper(), _sleeper()
    try:
        assert watch.watch("pod-a", rec_a) and watch.watch("pod-b", rec_b)
        assert watch.watch("pod-a", rec_a) and len(watch) == 2  # watching twice is one watch
        assert watch.exited() == set()
        os.kill(a.pid, signal.SIGKILL)
        assert _exited_within(watch) == {"pod-a"}
        assert watch.exited() == set() and len(watch) == 1  # once
    finally:
        for p in (a, b):
            p.kill()
            p.wait()


def test_a_zombie_counts_as_exited() -> None:
    """The kubelet reaps a container only when it looks at it: an unreaped exit must be reported."""
    watch = ExitWatch()
    proc, rec = _sleeper()
    try:
        assert watch.watch("pod", rec)
        os.kill(proc.pid, signal.SIGTERM)  # not waited for: a zombie
        assert _exited_within(watch) == {"pod"}
    finally:
        proc.kill()
        proc.wait()


def test_a_gone_or_reused_pid_is_not_watched() -> None:
    watch = ExitWatch()
    proc, rec = _sleeper()
    try:
        assert not watch.watch("pod", ProcRecord(rec.pid, rec.start + 1))  # the PID is someone else's now
    finally:
        proc.kill()
        proc.wait()
    assert not watch.watch("pod", rec)  # exited and reaped
    assert len(watch) == 0


def test_forget_closes_the_owners_descriptors() -> None:
    watch = ExitWatch()
    procs = [_sleeper() for _ in range(3)]
    try:
        fds = len(os.listdir("/proc/self/fd"))
        for i, (_p, rec) in enumerate(procs):
            assert watch.watch("gone" if i < 2 else "kept", rec)
        assert len(os.listdir("/proc/self/fd")) == fds + 3
        watch.forget("gone")
        assert len(watch) == 1 and len(os.listdir("/proc/self/fd")) == fds + 1
        procs[0][0].kill()
        procs[0][0].wait()
        assert watch.exited() == set()  # a forgotten pod's exits are not reported
    finally:
        for p, _rec in procs:
            p.kill()
            p.wait()
