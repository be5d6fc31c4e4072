"""membrane.lab.processes.spawn/stop with real child processes (``sleep``): a spawned process is not
tracked by ``subprocess`` (whose every new Popen polls each orphaned one: O(n) per process started),
and ``stop`` still reaps it, so no zombie stays behind."""

from __future__ import annotations

import gc
import subprocess

from membrane.lab import processes


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return ""


def test_spawned_processes_stay_out_of_subprocess_tracking_and_stop_reaps_them(tmp_path) -> None:
    records = [processes.spawn(["sleep", "30"], str(tmp_path / f"p{i}.log")) for i in range(5)]
    try:
        gc.collect()
        active = [p.pid for p in subprocess._active]  # type: ignore[attr-defined]
        assert not {r.pid for r in records} & set(active)
        assert all(processes.is_alive(r) for r in records)
    finally:
        for rec in records:
            processes.stop(rec, timeout=2)
    for rec in records:
        assert _state(rec.pid) == ""  # gone, not a zombie
        assert rec.pid not in processes._children


def test_a_process_that_exits_by_itself_is_reaped_by_stop(tmp_path) -> None:
    rec = processes.spawn(["true"], str(tmp_path / "t.log"))
    for _ in range(200):
        if not processes.is_alive(rec):
            break
        subprocess.run(["sleep", "0.01"], check=True)
    assert not processes.is_alive(rec) and _state(rec.pid) == "Z"  # a zombie until reaped
    processes.stop(rec)
    assert _state(rec.pid) == "" and rec.pid not in processes._children
