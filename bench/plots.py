"""PNG charts of a run: one per benchmark, the median ratio of each metric with its min–max over runs.

matplotlib is an optional dependency (``pip install -e '.[bench]'``); without it the plots are skipped
with a warning and the numbers are still written.
"""

from __future__ import annotations

import os
import re
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from bench.harness import Measurement, fmt_ratio

LOG_SPAN = 100.0  # a log x-scale when the ratios span more than two decades
BETTER, WORSE = "#2e7d32", "#e07b00"


def slug(name: str) -> str:
    """A file name from a benchmark name: lower case, runs of anything else than [a-z0-9] as one '-'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "benchmark"


def group_by_benchmark(results: Sequence[Measurement]) -> dict[str, list[Measurement]]:
    groups: dict[str, list[Measurement]] = {}
    for m in results:
        groups.setdefault(m.benchmark, []).append(m)
    return groups


def plot_results(results: Sequence[Measurement], out_dir: str, date: str) -> list[str]:
    """Write one PNG per benchmark that has ratios into ``out_dir``; return their paths."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("warning: matplotlib is not installed (pip install -e '.[bench]'): no plots", file=sys.stderr)
        return []
    os.makedirs(out_dir, exist_ok=True)
    written: list[str] = []
    used: set[str] = set()
    for bench, ms in group_by_benchmark(results).items():
        rows = [(m, stats) for m in ms if (stats := m.ratio_stats()) is not None]
        if not rows:
            continue
        name = slug(bench)
        while name in used:
            name += "-x"
        used.add(name)
        path = os.path.join(out_dir, f"{name}.png")
        fig = _chart(plt, bench, date, rows)
        try:
            fig.savefig(path, dpi=110)
        finally:
            plt.close(fig)
        written.append(path)
    return written


def _label(m: Measurement) -> str:
    better = "higher" if m.higher_is_better else "lower"
    text = f"{m.metric} ({m.unit}, {better} is better)"
    text += f" vs {m.baseline_name}" if m.baseline_name else ""
    return "\n".join(textwrap.wrap(text, 48))


Row = tuple[Measurement, tuple[float, float, float]]  # a measurement and its ratio (median, min, max)


def _chart(plt: Any, bench: str, date: str, rows: list[Row]) -> Any:
    medians = [s[0] for _, s in rows]
    lows = [s[1] for _, s in rows]
    highs = [s[2] for _, s in rows]
    positive = [v for v in lows + highs + [1.0] if v > 0]
    log = min(lows) > 0 and max(positive) / min(positive) > LOG_SPAN
    colors = [BETTER if (med >= 1.0) == m.higher_is_better or med == 1.0 else WORSE
              for (m, _), med in zip(rows, medians, strict=True)]
    height = 1.4 + 0.55 * len(rows) + 0.12 * sum(_label(m).count("\n") for m, _ in rows)
    fig, ax = plt.subplots(figsize=(10, height))
    y = list(range(len(rows)))
    err = [[med - lo for med, lo in zip(medians, lows, strict=True)],
           [hi - med for med, hi in zip(medians, highs, strict=True)]]
    ax.barh(y, medians, xerr=err, color=colors, capsize=4, height=0.6, ecolor="#333333")
    ax.axvline(1.0, color="black", linewidth=1, linestyle="--")
    ax.set_yticks(y, [_label(m) for m, _ in rows], fontsize=8)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
        ax.set_xlim(min(positive) / 3, max(positive) * 3)
    else:
        ax.set_xlim(0, max(highs + [1.0]) * 1.18)
    for yi, med, hi in zip(y, medians, highs, strict=True):
        ax.annotate(f"{fmt_ratio(med)}×", (hi, yi), xytext=(4, 0), textcoords="offset points", va="center",
                    fontsize=8)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=BETTER, label="ours better than the baseline"),
                       Patch(color=WORSE, label="ours worse than the baseline")],
              fontsize=7, loc="best")
    xlabel = "ours / same-run baseline (median, bars: min–max over runs)"
    ax.set_xlabel(xlabel + (", log scale" if log else ""))
    ax.set_title(f"{bench} — {date}", fontsize=10)
    ax.grid(axis="x", alpha=0.3, which="both" if log else "major")
    fig.tight_layout()
    return fig
