"""The lab's daemon supervisor (issue 18.2): backoff, exit descriptions, restarts and the liveness probe.

These start real (harmless) child processes — ``sh -c 'exit 3'`` and ``sleep`` — and stop them.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from membrane.lab import supervisor
from membrane.lab.supervisor import Supervisor, describe_exit, read_state, restart_delay


def test_backoff_doubles_to_a_cap_and_starts_over_after_a_long_run() -> None:
    assert [restart_delay(n, 0.1) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert restart_delay(6, supervisor.RESET_AFTER) == supervisor.BACKOFF_BASE


def test_exit_descriptions() -> None:
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-9) == "signal KILL"
    assert describe_exit(-200) == "signal 200"


def _run(sup: Supervisor) -> threading.Thread:
    thread = threading.Thread(target=sup.run, daemon=True)
    thread.start()
    return thread


def _until(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_crashing_daemon_is_restarted_and_its_last_exit_recorded(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "BACKOFF_BASE", 0.05)
    state = str(tmp_path / "d.json")
    sup = Supervisor(["sh", "-c", "exit 3"], state, remove=[str(tmp_path / "stale.sock")])
    (tmp_path / "stale.sock").write_text("")
    thread = _run(sup)
    try:
        _until(lambda: (s := read_state(state)) is not None and s.restarts >= 2)
    finally:
        sup.stop()
        thread.join(10)
    final = read_state(state)
    assert final is not None and final.state == "stopped" and final.last_exit == "exit code 3"
    assert not (tmp_path / "stale.sock").exists()


def test_stop_terminates_the_daemon(tmp_path: Path) -> None:
    state = str(tmp_path / "d.json")
    sup = Supervisor(["sleep", "30"], state, remove=[])
    thread = _run(sup)
    _until(lambda: (s := read_state(state)) is not None and s.state == "running")
    sup.stop()
    thread.join(10)
    final = read_state(state)
    assert not thread.is_alive() and final is not None
    assert (final.state, final.restarts, final.last_exit) == ("stopped", 0, "signal TERM")


def test_a_daemon_that_fails_its_liveness_probe_is_killed_and_restarted(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "PROBE_INTERVAL", 0.05)
    monkeypatch.setattr(supervisor, "BACKOFF_BASE", 0.05)
    state = str(tmp_path / "d.json")
    sup = Supervisor(["sleep", "30"], state, remove=[], health_socket=str(tmp_path / "nobody.sock"))
    thread = _run(sup)
    try:
        _until(lambda: (s := read_state(state)) is not None and s.restarts >= 1)
    finally:
        sup.stop()
        thread.join(10)
    final = read_state(state)
    assert final is not None and final.restarts >= 1
