"""``python -m bench [NAME...] [--runs N]``: run benchmarks, then print one summary — every ratio, the goals
(bench/goals.py) and the timing — and write it with plots to ``bench/results/<date>/``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from bench import goals
from bench.harness import Benchmark, Measurement, RunReport, render_summary, run_benchmarks, write_results

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

# name -> module with run(runs); imported only when that benchmark runs, so one broken module is one
# failed benchmark, and --help needs none of them.
MODULES = {name: f"bench.{name}" for name in ("churn", "datapath", "policy", "services", "scale", "events", "l2lbipam",
                                               "clusterip", "policy_cidr", "l7proxy", "l7dns")}
# What `make bench` runs (the table, within its 20-minute budget). ``events`` (Hubble's cost) and
# ``clusterip`` (pod→ClusterIP vs pod IP; the datapath benchmark's ClusterIP row covers it against the
# kernel) run by name.
DEFAULT = ("churn", "datapath", "policy", "services", "scale", "policy_cidr")


def _lazy(module: str) -> Benchmark:
    def run(runs: int) -> list[Measurement]:
        return importlib.import_module(module).run(runs)

    run.__qualname__ = f"{module}.run"
    return run


def registry() -> dict[str, Benchmark]:
    return {name: _lazy(module) for name, module in MODULES.items()}


def report(run: RunReport, out_root: str, plots: bool = True) -> str:
    """Goals, plots and the written results of a finished run; prints the summary. Returns the directory."""
    out_dir = os.path.join(out_root, run.day)
    checked = goals.evaluate(run.results, run.runs)
    pngs: list[str] = []
    if plots:
        try:
            from bench.plots import plot_results

            pngs = plot_results(run.results, out_dir, run.day)
        except Exception:  # the numbers are measured: a plotting problem must not lose them
            traceback.print_exc()
            print("warning: plotting failed, results are written without plots", file=sys.stderr)
    sections = [("Goals", goals.render_goals(checked))]
    write_results(run, out_dir, sections, extra={"goals": [g.to_dict() for g in checked]}, plots=pngs)
    print()
    print(render_summary(run, sections))
    for png in pngs:
        print(f"plot: {png}")
    print(f"\nresults written to {out_dir}/")
    return out_dir


def main(argv: list[str] | None = None, benches: dict[str, Benchmark] | None = None) -> int:
    benches = registry() if benches is None else benches
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    default = list(DEFAULT) if set(DEFAULT) <= set(benches) else list(benches)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: {', '.join(default)}; "
                                                 f"known: {', '.join(benches)})")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (median reported)")
    parser.add_argument("--out", default=RESULTS, help="results root; a <date>/ directory is written in it")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG charts")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("benchmarks build labs: run as root", file=sys.stderr)
        return 1
    unknown = [n for n in args.names if n not in benches]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(benches)})", file=sys.stderr)
        return 2
    run = run_benchmarks(benches, args.names or default, args.runs)
    report(run, args.out, plots=not args.no_plots)
    if run.failed:
        print(f"failed: {', '.join(r.name for r in run.failed)}", file=sys.stderr)
    return 130 if run.interrupted else 1 if run.failed else 0


if __name__ == "__main__":
    sys.exit(main())
