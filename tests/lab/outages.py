"""Outages seen by a probe loop (tests/lab/probe_loop.py), and which kill each one followed.

Pure functions of the probes' start times and results, unit-tested in tests/unit/test_chaos_outages.py.
"""

from __future__ import annotations


def outages(probes: list[tuple[float, bool]], every: float) -> list[tuple[float, float]]:
    """(first failed start, next successful start) of every run of failed probes, by start time.

    A run still failing at the last probe ends one probe interval (``every``) after it.
    """
    runs: list[tuple[float, float]] = []
    first: float | None = None
    last = 0.0
    for start, ok in sorted(probes):
        last = start
        if not ok and first is None:
            first = start
        elif ok and first is not None:
            runs.append((first, start))
            first = None
    if first is not None:
        runs.append((first, last + every))
    return runs


def longest_after_each_kill(runs: list[tuple[float, float]], kills: list[tuple[str, float]]) -> dict[str, float]:
    """The longest outage that began after each kill and before the next (``baseline``: before the first)."""
    out = {"baseline": 0.0, **{name: 0.0 for name, _ in kills}}
    for start, end in runs:
        owner = "baseline"
        for name, at in kills:
            if start >= at:
                owner = name
        out[owner] = max(out[owner], end - start)
    return out
