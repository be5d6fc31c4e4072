"""Where a pod's start spends its time: per-stage samples of endpoint creation, by scope.

The agent times each stage of a CNI ADD and of what follows until the endpoint is ready (IPAM, veth,
endpoint map, BPF attach, route, state file, identity, ipcache publication, policy) and files the
seconds here under a *scope*, as Cilium files ``cilium_endpoint_regeneration_time_stats_seconds``.
Each scope keeps its count, sum, Prometheus-style cumulative buckets and the last ``window`` samples,
from which ``summary()`` gives exact p50/p99 for ``membrane status -o json`` and the churn benchmark.
Listeners (the metrics histogram) see every observation. Thread-safe; pure (no I/O).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# Cilium's regeneration buckets (seconds), shared with the Prometheus histogram.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
WINDOW = 4096  # samples kept per scope for the percentiles

# The stages of one pod's start; ``total`` is the whole CNI ADD in the agent, ``waitingForPolicy`` the
# part of it after the plumbing, until identity and policy are in place.
SCOPES = ("waitingForLock", "ipam", "veth", "endpointMap", "bpfAttach", "route", "persist", "total",
          "identityAllocation", "ipcachePublish", "policyCalculation", "waitingForIdentity", "waitingForPolicy")

Listener = Callable[[str, float], None]


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of ``values`` (the churn benchmark's definition); 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class _Scope:
    __slots__ = ("count", "total", "buckets", "recent")

    def __init__(self, window: int) -> None:
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * len(BUCKETS)
        self.recent: deque[float] = deque(maxlen=window)


class StageTimes:
    def __init__(self, window: int = WINDOW) -> None:
        if window < 1:
            raise ValueError(f"window {window}: must be at least 1")
        self._window = window
        self._lock = threading.Lock()
        self._scopes: dict[str, _Scope] = {}
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(scope, seconds)`` for every later observation."""
        with self._lock:
            self._listeners.append(listener)

    def observe(self, scope: str, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"scope {scope}: negative duration {seconds}")
        with self._lock:
            entry = self._scopes.get(scope)
            if entry is None:
                entry = self._scopes[scope] = _Scope(self._window)
            entry.count += 1
            entry.total += seconds
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    entry.buckets[i] += 1
            entry.recent.append(seconds)
            listeners = list(self._listeners)
        for listener in listeners:
            listener(scope, seconds)

    @contextmanager
    def stage(self, scope: str) -> Iterator[None]:
        """Time the block under ``scope`` (also when it raises: a failed stage still took its time)."""
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.observe(scope, time.monotonic() - t0)

    def summary(self) -> dict[str, dict[str, Any]]:
        """``{scope: {count, sum, p50, p99, max, buckets: {le: cumulative count}}}``, known scopes first."""
        with self._lock:
            items = {name: (s.count, s.total, list(s.buckets), list(s.recent)) for name, s in self._scopes.items()}
        order = [s for s in SCOPES if s in items] + sorted(s for s in items if s not in SCOPES)
        out: dict[str, dict[str, Any]] = {}
        for name in order:
            count, total, buckets, recent = items[name]
            out[name] = {"count": count, "sum": round(total, 6), "p50": round(percentile(recent, 50), 6),
                         "p99": round(percentile(recent, 99), 6), "max": round(max(recent, default=0.0), 6),
                         "buckets": {str(b): n for b, n in zip(BUCKETS, buckets, strict=True)}}
        return out
