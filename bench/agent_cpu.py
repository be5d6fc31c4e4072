"""The agents' CPU time during a churn run (user + system, every thread), from ``/proc/<pid>/stat``.

``python -m bench.agent_cpu --watch OUT.jsonl`` follows every lab that appears under ``/run/membrane``
(any tree's churn run, so an old tree can be measured without changing it) and appends one line per
lab when it goes: the agents' CPU seconds from the first sample to the last, and how many pods the
lab's CNI timings file listed (the probe pod included).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from membrane.lab.daemons import daemon_state
from membrane.lab.paths import LabPaths

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of stat(5), after "pid (comm)"


def agent_pids(lab: str, nodes: list[str]) -> dict[str, int]:
    out = {}
    for node in nodes:
        state = daemon_state(lab, f"agent-{node}")
        if state is not None and state.pid:
            out[node] = state.pid
    return out


def agents_cpu(lab: str, nodes: list[str]) -> float:
    """The agents' CPU seconds so far (a restarted agent counts from its restart)."""
    return sum(cpu_seconds(pid) or 0.0 for pid in agent_pids(lab, nodes).values())


def _nodes(lab: str) -> list[str]:
    sup = f"{LabPaths(lab).run_dir}/supervise"
    try:
        return [n.removeprefix("agent-").removesuffix(".json") for n in os.listdir(sup) if n.startswith("agent-")]
    except OSError:
        return []


def watch(out: str, interval: float = 0.5) -> None:
    seen: dict[str, dict[int, tuple[float, float]]] = {}  # lab -> pid -> (first, last) CPU seconds
    while True:
        labs = set(os.listdir("/run/membrane")) if os.path.isdir("/run/membrane") else set()
        for lab in labs:
            for pid in agent_pids(lab, _nodes(lab)).values():
                cpu = cpu_seconds(pid)
                if cpu is not None:
                    first = seen.setdefault(lab, {}).get(pid, (cpu, cpu))[0]
                    seen[lab][pid] = (first, cpu)
        for lab in [name for name in seen if name not in labs]:
            pids = seen.pop(lab)
            line = {"lab": lab, "time": time.time(), "agents": len(pids),
                    "cpu_seconds": round(sum(last - first for first, last in pids.values()), 3),
                    "cpu_total": round(sum(last for _first, last in pids.values()), 3)}
            with open(out, "a") as fh:
                fh.write(json.dumps(line) + "\n")
            print(json.dumps(line), flush=True)
        time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watch", metavar="OUT", required=True, help="append one JSON line per finished lab")
    args = parser.parse_args(argv)
    watch(args.watch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
