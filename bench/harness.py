"""The benchmark harness: run benchmarks, repeat them, and report ratios against same-run baselines.

A benchmark is a function ``run(runs) -> list[Measurement]``; each measurement names a subject, its
baseline (measured in the same run), the unit and which direction is better. ``run_benchmarks`` runs
several, times each one and keeps going when one raises; ``write_results`` writes
``bench/results/<date>/results.json`` and ``results.md`` with the same summary that is printed.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

BUDGET_S = 20 * 60  # `make bench` must finish within this


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
    def median(self) -> float | None:
        return statistics.median(self.subject) if self.subject else None

    @property
    def baseline_median(self) -> float | None:
        return statistics.median(self.baseline) if self.baseline else None

    def ratios(self) -> list[float]:
        """Per-repetition ratios subject/baseline (pairs measured back to back)."""
        return [s / b for s, b in zip(self.subject, self.baseline, strict=False) if b]

    def ratio_stats(self) -> tuple[float, float, float] | None:
        """(median, min, max) of the per-repetition ratios, None without a baseline."""
        return spread(self.ratios())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["median"] = self.median
        d["baseline_median"] = self.baseline_median
        stats = self.ratio_stats()
        d["ratio_median"], d["ratio_min"], d["ratio_max"] = stats if stats else (None, None, None)
        return d


Benchmark = Callable[[int], list[Measurement]]


def spread(values: Sequence[float]) -> tuple[float, float, float] | None:
    return (statistics.median(values), min(values), max(values)) if values else None


@dataclass
class BenchRun:
    """One benchmark of a run: how long it took and, if it raised, why."""

    name: str
    elapsed_s: float
    measurements: int = 0
    error: str = ""  # one line: "RuntimeError: ..."
    traceback: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.error)

    @property
    def status(self) -> str:
        return "FAILED" if self.failed else "ok"


@dataclass
class RunReport:
    started: float  # time.time() at the start
    results: list[Measurement] = field(default_factory=list)
    runs: list[BenchRun] = field(default_factory=list)
    total_s: float = 0.0
    interrupted: bool = False

    @property
    def day(self) -> str:
        return time.strftime("%Y-%m-%d", time.localtime(self.started))

    @property
    def failed(self) -> list[BenchRun]:
        return [r for r in self.runs if r.failed]


def run_benchmarks(benches: Mapping[str, Benchmark], names: Iterable[str], runs: int,
                   clock: Callable[[], float] = time.monotonic) -> RunReport:
    """Run each named benchmark in turn; a benchmark that raises is recorded as failed and the next
    one still runs. Ctrl-C stops after recording the interrupted benchmark, so what was measured is kept."""
    report = RunReport(started=time.time())
    t_start = clock()
    for name in names:
        print(f"== {name}", flush=True)
        t0 = clock()
        try:
            got = list(benches[name](runs))
        except KeyboardInterrupt:
            report.runs.append(BenchRun(name, clock() - t0, error="interrupted (Ctrl-C)"))
            report.interrupted = True
            print(f"== {name} interrupted after {fmt_duration(clock() - t0)}; stopping", flush=True)
            break
        except Exception as exc:  # a broken benchmark must not lose the others' numbers
            elapsed = clock() - t0
            tb = traceback.format_exc()
            print(tb, end="", flush=True)
            report.runs.append(BenchRun(name, elapsed, error=_one_line(exc), traceback=tb))
            print(f"== {name} FAILED after {fmt_duration(elapsed)}: {_one_line(exc)}", flush=True)
            continue
        elapsed = clock() - t0
        report.results.extend(got)
        report.runs.append(BenchRun(name, elapsed, measurements=len(got)))
        print(f"== {name} done in {fmt_duration(elapsed)} ({len(got)} measurements)", flush=True)
    report.total_s = clock() - t_start
    return report


def _one_line(exc: BaseException, limit: int = 160) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


# ---- rendering --------------------------------------------------------------------------------


def fmt_value(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.4f}"


def fmt_ratio(v: float) -> str:
    """Ratios: two decimals, or scientific when tiny (eBPF map update against a full iptables rewrite)."""
    return f"{v:.2f}" if abs(v) >= 0.01 or v == 0 else f"{v:.1e}"


def fmt_spread(stats: tuple[float, float, float]) -> str:
    """``median× [min–max]``, all three in the same notation."""
    tiny = any(v != 0 and abs(v) < 0.01 for v in stats)
    f = (lambda v: f"{v:.1e}") if tiny else (lambda v: f"{v:.2f}")
    return f"{f(stats[0])}× [{f(stats[1])}–{f(stats[2])}]"


def fmt_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    return f"{minutes}m{sec:02d}s"


def render_table(results: Sequence[Measurement], failed: Sequence[BenchRun] = ()) -> str:
    """Every measurement with its ratio to the same-run baseline; failed benchmarks as rows too."""
    head = "benchmark | metric | ours (median) | baseline | baseline (median) | ratio median [min–max] | runs"
    rows = [f"| {head} |", "|" + "---|" * 7]
    for m in results:
        stats = m.ratio_stats()
        ratio = "-" if stats is None else fmt_spread(stats)
        rows.append(f"| {m.benchmark} | {m.metric} ({m.unit}) | {fmt_value(m.median)} | "
                    f"{m.baseline_name or '-'} | {fmt_value(m.baseline_median)} | {ratio} | "
                    f"{len(m.subject)} |")
    for r in failed:
        rows.append(f"| {r.name} | FAILED: {_cell(r.error)} | - | - | - | - | - |")
    return "\n".join(rows)


def render_timing(report: RunReport, budget_s: float = BUDGET_S) -> str:
    rows = ["| benchmark | status | elapsed | measurements |", "|---|---|---|---|"]
    for r in report.runs:
        status = r.status if not r.failed else f"FAILED: {_cell(r.error)}"
        rows.append(f"| {r.name} | {status} | {fmt_duration(r.elapsed_s)} | {r.measurements} |")
    verdict = "within" if report.total_s <= budget_s else "OVER"
    failed = len(report.failed)
    status = f"{failed} failed" if failed else "ok"
    if report.interrupted:
        status += ", interrupted"
    rows.append(f"| **total** | {status} | {fmt_duration(report.total_s)} ({verdict} the "
                f"{fmt_duration(budget_s)} budget) | {len(report.results)} |")
    return "\n".join(rows)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_summary(report: RunReport, sections: Sequence[tuple[str, str]] = ()) -> str:
    """The summary printed at the end and written to results.md: ratios, extra sections (goals), timing."""
    parts = [render_table(report.results, report.failed)]
    parts += [f"## {title}\n\n{body}" for title, body in sections]
    parts.append(f"## Timing\n\n{render_timing(report)}")
    return "\n\n".join(parts)


def write_results(report: RunReport, out_dir: str, sections: Sequence[tuple[str, str]] = (),
                  extra: Mapping[str, Any] | None = None, plots: Sequence[str] = ()) -> str:
    """results.json (every figure, timings, failures, ``extra`` such as goals) and results.md."""
    os.makedirs(out_dir, exist_ok=True)
    doc: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(report.started)),
        "results": [m.to_dict() for m in report.results],
        "benchmarks": [{"name": r.name, "status": r.status, "elapsed_s": round(r.elapsed_s, 3),
                        "measurements": r.measurements, "error": r.error or None,
                        "traceback": r.traceback or None}
                       for r in report.runs],
        "total_s": round(report.total_s, 3),
        "budget_s": BUDGET_S,
        "failed": [r.name for r in report.failed],
        "interrupted": report.interrupted,
        "plots": [os.path.basename(p) for p in plots],
    }
    doc.update(extra or {})
    with open(os.path.join(out_dir, "results.json"), "w") as fh:
        json.dump(doc, fh, indent=2, ensure_ascii=False)
    with open(os.path.join(out_dir, "results.md"), "w") as fh:
        fh.write(f"# Membrane benchmarks, {report.day}\n\n{render_summary(report, sections)}\n")
        if plots:
            fh.write("\n## Plots\n\n")
            fh.writelines(f"- [{os.path.basename(p)}]({os.path.basename(p)})\n" for p in plots)
        notes = _notes(report.results)
        if notes:
            fh.write("\n## Notes\n\n")
            fh.writelines(f"- {line}\n" for line in notes)
        for r in report.failed:
            if r.traceback:
                fh.write(f"\n## {r.name} failed\n\n```\n{r.traceback.rstrip()}\n```\n")
    return out_dir


def _notes(results: Sequence[Measurement]) -> list[str]:
    """One line per note; a note every measurement of a benchmark shares is written once for it."""
    lines: list[str] = []
    by_bench: dict[str, list[Measurement]] = {}
    for m in results:
        by_bench.setdefault(m.benchmark, []).append(m)
    for bench, ms in by_bench.items():
        if len(ms) > 1 and ms[0].notes and all(m.notes == ms[0].notes for m in ms):
            lines.append(f"{bench}: {ms[0].notes}")
        else:
            lines += [f"{bench} / {m.metric}: {m.notes}" for m in ms if m.notes]
    return lines
