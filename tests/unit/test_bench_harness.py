"""bench/harness.py, goals.py, plots.py and the CLI: tables, goals, timing, failures, plots (no root)."""

from __future__ import annotations

import json
import sys

import pytest

import bench.__main__ as cli
from bench.goals import GOALS, Goal, evaluate, render_goals
from bench.harness import (
    BenchRun,
    Measurement,
    RunReport,
    render_summary,
    render_table,
    render_timing,
    run_benchmarks,
)
from bench.plots import plot_results, slug

DP = "datapath pod→pod (2 nodes, cpu-pinned)"


def dp(metric: str, subject: list[float], baseline: list[float] | None = None) -> Measurement:
    return Measurement(DP, metric, "req/s", subject, [100.0] * len(subject) if baseline is None else baseline,
                       "kernel routing, no BPF")


def ticking(step: float = 2.0):
    t = [0.0]

    def clock() -> float:
        t[0] += step
        return t[0]

    return clock


def test_ratio_stats_pair_runs_and_skip_zero_baselines():
    m = Measurement("b", "m", "ms", [10.0, 20.0, 30.0, 40.0], [10.0, 10.0, 0.0, 10.0])
    assert m.ratios() == [1.0, 2.0, 4.0]
    assert m.ratio_stats() == (2.0, 1.0, 4.0)
    d = m.to_dict()
    assert (d["ratio_median"], d["ratio_min"], d["ratio_max"], d["median"]) == (2.0, 1.0, 4.0, 25.0)
    alone = Measurement("b", "m", "s", [3.0]).to_dict()
    assert alone["ratio_median"] is None and alone["baseline_median"] is None
    assert Measurement("b", "m", "s", []).median is None


def test_render_table_rows_tiny_ratios_and_failed_benchmarks():
    rows = [Measurement("services", "update, 1000 svc × 10 be", "ms", [0.8, 0.9, 0.7],
                        [6000.0, 5900.0, 6100.0], "iptables-restore full (nft)", higher_is_better=False),
            Measurement("scale", "resolve", "s", [157.0])]
    table = render_table(rows, [BenchRun("churn", 3.0, error="RuntimeError: a | b")]).splitlines()
    assert table[0].startswith("| benchmark | metric |") and len(table) == 5
    assert "| 1.3e-04× [1.1e-04–1.5e-04] | 3 |" in table[2]
    assert table[3] == "| scale | resolve (s) | 157 | - | - | - | 1 |"
    assert table[4].startswith("| churn | FAILED: RuntimeError: a \\| b |")


def test_goals_met_missed_not_measured_failed_and_no_match():
    results = [dp("TCP_RR across nodes, Membrane, policy + 10k entries/identities", [96.0, 97.0, 94.0]),
               dp("TCP 1 stream across nodes, Membrane, policy + 10k entries/identities", [80.0, 85.0, 70.0]),
               Measurement("services", "update, 1000 svc × 10 be", "ms", [1.0], [500.0],
                           "iptables-restore full (nft)")]
    runs = [BenchRun("datapath", 60.0, 2), BenchRun("services", 30.0, 1),
            BenchRun("churn", 5.0, error="OSError: x")]
    checked = evaluate(results, runs)
    status = [r.status for r in checked]
    assert [g.suite for g in GOALS] == (["datapath"] * 17 + ["services"] * 2 + ["policy", *["churn"] * 3, "scale"]
                                        + ["policy_cidr"] * 2 + ["l7proxy"] * 3 + ["events"] * 2)
    assert status == ["MET", "MISSED", *["NO MATCH"] * 15, "MET", "NO MATCH", "not measured", *["FAILED"] * 3,
                      *["not measured"] * 8]
    by_what = {r.goal.what: r for r in checked}
    rr = next(r for r in by_what.values() if r.goal.what.startswith("TCP_RR"))
    assert rr.checks[0].value == pytest.approx(0.96) and rr.checks[0].runs == 3
    text = render_goals(list(by_what.values()))
    assert "| ≥ 0.95× | 0.96× [0.94–0.97] (3 runs) | MET |" in text
    assert "| FAILED |" in text and "| not measured |" in text and "| NO MATCH |" in text
    assert "churn failed: OSError: x" in text
    assert text.splitlines()[-1] == "2 of 31 goals met, 1 MISSED, 3 FAILED, 16 NO MATCH, 9 not measured"
    stretch = Goal("churn", "s", "pod churn", "pods/s", ">=", 0.5, "a", baseline="bare", stretch=True)
    assert "(stretch)" in render_goals(evaluate([], runs, goals=[stretch]))
    assert json.dumps([r.to_dict() for r in by_what.values()])


def test_goal_versus_pairs_runs_and_absolute_uses_the_subject():
    results = [dp("TCP_CRR across nodes, +0 policy entries", [100.0, 200.0, 100.0]),
               dp("TCP_CRR across nodes, +10000 policy entries", [95.0, 150.0, 90.0]),
               Measurement("control plane at scale (150,000 endpoints)", "resolve every identity's policy",
                           "s", [50.0, 70.0, 55.0], higher_is_better=False)]
    versus = Goal("datapath", "w", "datapath", ("TCP_CRR", "+10000"), ">=", 0.9, "a", kind="versus",
                  versus=("TCP_CRR", "+0 policy"))
    absolute = Goal("scale", "s", "control plane at scale", "resolve", "<=", 60.0, "a", kind="absolute")
    [v, a] = evaluate(results, goals=[versus, absolute])
    assert v.status == "MET" and v.checks[0].value == pytest.approx(0.9)
    assert v.checks[0].low == pytest.approx(0.75)
    assert "+10000 policy entries vs TCP_CRR across nodes, +0 policy entries" in v.checks[0].label
    assert a.status == "MET" and a.checks[0].value == 55.0
    assert "| ≤ 60 s | 55.00 s [50.00–70.00] (3 runs) | MET |" in render_goals([a])
    # without run records: nothing matched means the benchmark was not run
    assert evaluate([], goals=[absolute])[0].status == "not measured"
    with pytest.raises(ValueError):
        Goal("datapath", "w", "datapath", "x", ">=", 1.0, "a", kind="versus")
    with pytest.raises(ValueError):
        Goal("datapath", "w", "datapath", "x", ">", 1.0, "a")  # type: ignore[arg-type]


def test_every_goal_names_a_registered_benchmark():
    assert {g.suite for g in GOALS} <= set(cli.MODULES)


def test_failed_benchmark_is_recorded_and_the_others_still_run(capsys):
    def broken(runs: int) -> list[Measurement]:
        raise RuntimeError("lab did not come up")

    benches = {"a": lambda runs: [Measurement("a", "m", "x", [1.0] * runs, [2.0] * runs, "b")],
               "broken": broken, "c": lambda runs: [Measurement("c", "m", "x", [3.0])]}
    report = run_benchmarks(benches, ["a", "broken", "c"], 2, clock=ticking())
    assert [m.benchmark for m in report.results] == ["a", "c"]
    assert [(r.name, r.status, r.elapsed_s) for r in report.runs] == [
        ("a", "ok", 2.0), ("broken", "FAILED", 2.0), ("c", "ok", 2.0)]
    assert report.failed[0].error == "RuntimeError: lab did not come up"
    assert "Traceback" in report.failed[0].traceback and report.total_s == 14.0
    out = capsys.readouterr().out
    assert "Traceback" in out and "== broken FAILED after 2.0 s" in out
    timing = render_timing(report, budget_s=10)
    assert "| broken | FAILED: RuntimeError: lab did not come up | 2.0 s | 0 |" in timing
    assert timing.splitlines()[-1] == "| **total** | 1 failed | 14.0 s (OVER the 10.0 s budget) | 2 |"
    summary = render_summary(report, [("Goals", "goals here")])
    assert summary.index("| benchmark | metric") < summary.index("## Goals") < summary.index("## Timing")


def test_ctrl_c_stops_the_run_and_keeps_what_was_measured():
    def interrupted(runs: int) -> list[Measurement]:
        raise KeyboardInterrupt

    benches = {"a": lambda runs: [Measurement("a", "m", "x", [1.0])], "i": interrupted,
               "never": lambda runs: pytest.fail("ran after Ctrl-C")}
    report = run_benchmarks(benches, ["a", "i", "never"], 1, clock=ticking())
    assert report.interrupted and [r.name for r in report.runs] == ["a", "i"] and len(report.results) == 1


def test_main_writes_results_goals_timing_and_fails_when_a_benchmark_failed(tmp_path, monkeypatch, capsys):
    def broken(runs: int) -> list[Measurement]:
        raise ValueError("boom")

    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)
    benches = {"datapath": lambda runs: [dp("TCP_RR across nodes, Membrane, policy + 10k entries/identities", [99.0] * runs)],
               "churn": broken}
    assert cli.main(["--runs", "2", "--out", str(tmp_path), "--no-plots"], benches=benches) == 1
    [day] = list(tmp_path.iterdir())
    doc = json.loads((day / "results.json").read_text())
    assert doc["failed"] == ["churn"] and doc["total_s"] >= 0 and doc["budget_s"] == 1200
    assert [b["name"] for b in doc["benchmarks"]] == ["datapath", "churn"]
    assert "ValueError: boom" in doc["benchmarks"][1]["traceback"]
    goals = {g["what"]: g["status"] for g in doc["goals"]}
    assert goals[GOALS[0].what] == "MET" and "FAILED" in goals.values() and "not measured" in goals.values()
    md = (day / "results.md").read_text()
    assert "## Goals" in md and "## Timing" in md and "## churn failed" in md
    out = capsys.readouterr().out
    assert out.count("| benchmark | metric |") == 1 and "## Goals" in out and "**total**" in out
    assert cli.main(["nope"], benches=benches) == 2


def test_help_needs_no_root(monkeypatch, capsys):
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0 and "datapath" in capsys.readouterr().out
    assert cli.main([]) == 1  # refuses to build labs without root


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # matplotlib 3.9's mathtext on a newer pyparsing
def test_plots_one_png_per_benchmark_with_ratios(tmp_path):
    pytest.importorskip("matplotlib")
    results = [dp("TCP_RR across nodes, Membrane, policy + 10k entries/identities", [96.0, 97.0, 94.0]),
               dp("TCP_CRR across nodes, +0 policy entries", [80.0, 70.0, 90.0]),
               Measurement("services", "update, 1000 svc", "ms", [0.8, 0.9], [6000.0, 5000.0], "full",
                           higher_is_better=False),
               Measurement("services", "update, 1000 svc", "ms", [0.8, 0.9], [90.0, 95.0], "partial",
                           higher_is_better=False),
               Measurement("scale", "resolve", "s", [157.0])]  # no baseline: no ratio, no plot
    paths = plot_results(results, str(tmp_path / "out"), "2026-11-21")
    names = sorted(p.rsplit("/", 1)[1] for p in paths)
    assert names == ["datapath-pod-pod-2-nodes-cpu-pinned.png", "services.png"]
    for p in paths:
        with open(p, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plots_skipped_with_a_warning_without_matplotlib(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert plot_results([dp("TCP_RR", [1.0])], str(tmp_path), "d") == []
    assert "matplotlib is not installed" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_slug():
    assert slug("pod→ClusterIP, 10,000 services (2 nodes)") == "pod-clusterip-10-000-services-2-nodes"
    assert slug("→") == "benchmark"


def test_report_keeps_numbers_when_plotting_breaks(tmp_path, monkeypatch, capsys):
    import bench.plots

    def explode(*args: object) -> list[str]:
        raise RuntimeError("no display")

    monkeypatch.setattr(bench.plots, "plot_results", explode)
    run = RunReport(started=0.0, results=[dp("TCP_RR across nodes, Membrane, policy + 10k entries/identities", [96.0])],
                    runs=[BenchRun("datapath", 1.0, 1)], total_s=1.0)
    out = cli.report(run, str(tmp_path))
    assert json.loads((tmp_path / run.day / "results.json").read_text())["plots"] == []
    assert out.endswith(run.day) and "plotting failed" in capsys.readouterr().err
