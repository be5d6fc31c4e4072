"""The benchmark harness: run benchmarks, repeat them, and report ratios against same-run baselines.

A benchmark is a function ``run(ctx) -> list[Measurement]``; each measurement names a subject, its
baseline (measured in the same run), the unit and which direction is better. Results go to
``bench/results/<date>/results.json`` and ``results.md``, and a table is printed.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Measurement:
    benchmark: str
    metric: str
    unit: str
    subject: list[float]
    baseline: list[float] = field(default_factory=list)
    baseline_name: str = ""
    higher_is_better: bool = True
    notes: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.subject)

    @property
    def baseline_median(self) -> float | None:
        return statistics.median(self.baseline) if self.baseline else None

    def ratios(self) -> list[float]:
        """Per-repetition ratios subject/baseline (pairs measured back to back)."""
        return [s / b for s, b in zip(self.subject, self.baseline, strict=False) if b]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["median"] = self.median
        d["baseline_median"] = self.baseline_median
        r = self.ratios()
        d["ratio_median"] = statistics.median(r) if r else None
        d["ratio_min"] = min(r) if r else None
        d["ratio_max"] = max(r) if r else None
        return d


Benchmark = Callable[[int], list[Measurement]]


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.4f}"


def _r(v: float) -> str:
    """Ratios: two decimals, or scientific when tiny (eBPF map update against a full iptables rewrite)."""
    return f"{v:.2f}" if v >= 0.01 or v == 0 else f"{v:.1e}"


def render_table(results: list[Measurement]) -> str:
    head = "| benchmark | metric | ours (median) | baseline | baseline (median) | ratio median [min–max] | runs |"
    rows = [head, "|" + "---|" * 7]
    for m in results:
        d = m.to_dict()
        ratio = "-" if d["ratio_median"] is None else \
            f"{_r(d['ratio_median'])}× [{_r(d['ratio_min'])}–{_r(d['ratio_max'])}]"
        rows.append(f"| {m.benchmark} | {m.metric} ({m.unit}) | {_fmt(m.median)} | {m.baseline_name or '-'} | "
                    f"{_fmt(m.baseline_median)} | {ratio} | {len(m.subject)} |")
    return "\n".join(rows)


def write_results(results: list[Measurement], out_root: str) -> str:
    day = time.strftime("%Y-%m-%d")
    out = os.path.join(out_root, day)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "results": [m.to_dict() for m in results]}, fh, indent=2)
    with open(os.path.join(out, "results.md"), "w") as fh:
        fh.write(f"# Membrane benchmarks, {day}\n\n{render_table(results)}\n")
        for m in results:
            if m.notes:
                fh.write(f"\n- {m.benchmark} / {m.metric}: {m.notes}")
        fh.write("\n")
    return out
