"""Readiness from listening ports, read no more often than it needs to be.

A pod whose containers declare TCP ``containerPort``s is ready once every one of them listens in its
network namespace. Reading that (``/proc/<pid>/net/tcp``) walks the kernel's whole TCP table, and the lab
kubelet's pass runs several times a second during a burst. So the ports are read on every pass until all
declared ones listen, then at most every ``recheck`` seconds while the containers stay the same
processes (Kubernetes runs a readiness probe every 10 s by default); a restarted container is read at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from membrane.lab.pod_status import declared_tcp_ports
from membrane.lab.runtime import Sandbox


class ListeningPorts:
    def __init__(self, read: Callable[[Sandbox], set[int]], recheck: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.read = read
        self.recheck = recheck
        self.clock = clock
        self._seen: dict[str, tuple[float, tuple[int, ...], set[int]]] = {}  # uid -> (read at, pids, ports)

    def get(self, pod: dict[str, Any], sb: Sandbox) -> set[int]:
        pids = tuple(sorted(rec.pid for rec in sb.containers.values()))
        seen = self._seen.get(sb.uid)
        now = self.clock()
        if seen is not None and seen[1] == pids and now - seen[0] < self.recheck and \
                all(p in seen[2] for c in pod["spec"]["containers"] for p in declared_tcp_ports(c)):
            return seen[2]
        ports = self.read(sb)
        self._seen[sb.uid] = (now, pids, ports)
        return ports

    def forget(self, uid: str) -> None:
        self._seen.pop(uid, None)
