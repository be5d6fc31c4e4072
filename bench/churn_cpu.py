"""CPU seconds per pod start in a churn run, by process class (issue 16).

Read from ``/proc/<pid>/stat`` (utime + stime, and cutime + cstime: what a process has reaped) just
before the burst is applied and once every pod is Ready:

- ``kubelet``: the lab kubelet's own threads; ``kubelet: reaped helpers``: the short-lived programs it
  ran and reaped (``ip netns add``, the CNI plugin, and the shell pause's ``ip netns exec``/``unshare``
  if they exit), so the cost of an exec the runtime does per pod shows here;
- ``agents`` and ``etcd``: the daemons found by their command line (the agents' reaped helpers counted);
- ``pause``: every pod's sandbox process, with what it reaped (the shell pause runs ``hostname``);
- ``containers``: every container process (``nsenter`` execs the workload, so this is the workload), with
  what it reaped (the churn container's ``ping``/``date`` runs).

Pause and container processes are found through the runtime's pod records, so they are all new pods; for
the daemons the difference between the two readings is taken.
"""

from __future__ import annotations

import json
import os
from typing import Any

from membrane.lab.paths import LabPaths
from membrane.lab.processes import pids_with_arg

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _times(pid: int) -> tuple[float, float]:
    """(own CPU seconds, reaped children's CPU seconds) of a process; zeros if it is gone. ``stat``'s
    utime + stime count the whole thread group but in clock ticks, which round a pause's ~1 ms to
    nothing; so a single-threaded process's own time comes from ``schedstat`` (nanoseconds). Reaped
    children's time is a sum, so ticks do there."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        own = (int(fields[11]) + int(fields[12])) / CLK_TCK  # after the comm: utime [11], stime [12]
        if int(fields[17]) == 1:  # num_threads
            with open(f"/proc/{pid}/schedstat") as fh:
                own = int(fh.read().split()[0]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0
    return own, (int(fields[13]) + int(fields[14])) / CLK_TCK  # cutime [13], cstime [14]


def _daemon_pids(lab: str) -> dict[str, list[int]]:
    paths = LabPaths(lab)
    return {
        "kubelet": pids_with_arg(f"membrane.lab.kubelet --lab {lab} "),
        "agents": pids_with_arg(f"{paths.run_dir}/config/agent-"),
        "etcd": pids_with_arg(f"{paths.etcd_dir}/data"),
    }


def snapshot(lab: str, skip_pods: tuple[str, ...] = ()) -> dict[str, float]:
    """CPU seconds by class at this moment (daemons: totals since they started)."""
    out: dict[str, float] = {}
    for name, pids in _daemon_pids(lab).items():
        own = reaped = 0.0
        for pid in pids:
            o, r = _times(pid)
            own, reaped = own + o, reaped + r
        out[name] = own
        out[f"{name}: reaped helpers"] = reaped
    out["pause"] = out["containers"] = 0.0
    out["pods"] = 0
    records = f"{LabPaths(lab).run_dir}/pods"
    for entry in os.listdir(records) if os.path.isdir(records) else []:
        if not entry.endswith(".json"):
            continue
        try:
            with open(f"{records}/{entry}") as fh:
                sb: dict[str, Any] = json.load(fh)
        except (OSError, ValueError):
            continue
        if sb.get("name") in skip_pods:
            continue
        out["pods"] += 1
        if sb.get("pause"):
            out["pause"] += sum(_times(int(sb["pause"]["pid"])))
        for rec in (sb.get("containers") or {}).values():
            out["containers"] += sum(_times(int(rec["pid"])))
    return out


def per_pod(before: dict[str, float], after: dict[str, float], pods: int) -> dict[str, float]:
    """Class -> CPU milliseconds per pod started between the two snapshots."""
    keys = [k for k in after if k != "pods"]
    return {k: (after[k] - (before.get(k, 0.0) if k not in ("pause", "containers") else 0.0)) * 1e3 / max(pods, 1)
            for k in keys}


def render(cpu: dict[str, float]) -> str:
    rows = ["| process class | CPU ms per pod |", "|---|---|"]
    rows += [f"| {name} | {ms:.1f} |" for name, ms in cpu.items()]
    rows.append(f"| total | {sum(cpu.values()):.1f} |")
    return "\n".join(rows)
