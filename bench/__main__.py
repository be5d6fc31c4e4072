"""``python -m bench [NAME...] [--runs N]``: run benchmarks and print the ratio table."""

from __future__ import annotations

import argparse
import os
import sys

from bench.harness import Measurement, render_table, write_results


def registry() -> dict[str, object]:
    from bench import churn, clusterip, datapath, events, policy, scale, services

    return {"churn": churn.run, "datapath": datapath.run, "policy": policy.run, "events": events.run, "scale": scale.run,
            "services": services.run, "clusterip": clusterip.run}


def main(argv: list[str] | None = None) -> int:
    benches = registry()
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(benches)})")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (median reported)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("benchmarks build labs: run as root", file=sys.stderr)
        return 1
    unknown = [n for n in args.names if n not in benches]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(benches)})", file=sys.stderr)
        return 2
    results: list[Measurement] = []
    for name in args.names or list(benches):
        print(f"== {name}", flush=True)
        results.extend(benches[name](args.runs))  # type: ignore[operator]
    out = write_results(results, os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    print()
    print(render_table(results))
    print(f"\nresults written to {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
