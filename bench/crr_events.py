"""Events per cross-node TCP_CRR connection, at each monitor aggregation setting.

``python -m bench.crr_events [--seconds S] [--rounds N]``: a 2-node bench lab with the events benchmark's
pods (bench/datapath.py's PODS, no policy), ``rr crr`` from the client on the other node to the server
for S seconds per sample; the datapath's event counters (mb_event_stats: records written + lost) of
both nodes, read before and after, divided by the connections ``rr`` completed. The settings are
written into mb_config of both nodes as ``--set bpf.monitorAggregation=...`` / ``bpf.monitorFlags``
would set them (without restarting the agents), interleaved round by round. Counts, not rates: the
number does not depend on the machine's load (the CRR rate does).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile

from bench.datapath import PODS
from bench.netbench import RR_PORT, Servers, bench_lab, build_rr, in_ns, membrane, wait_listening, wait_pods
from membrane.datapath.maps.events import ConfigMap, EventStatsMap
from membrane.lab.paths import LabPaths
from membrane.lab.record import load_record
from membrane.model.monitor_aggregation import LOW, MEDIUM, NONE, TCP_FLAGS, MonitorAggregation

SETTINGS = (
    ("default (medium, monitorFlags all)", MonitorAggregation()),
    ('monitorFlags="syn fin rst"', MonitorAggregation(MEDIUM, flags=TCP_FLAGS["syn"] | TCP_FLAGS["fin"]
                                                      | TCP_FLAGS["rst"])),
    ("low", MonitorAggregation(LOW)),
    ("none", MonitorAggregation(NONE)),
)


def _events(pins: list[str]) -> int:
    total = 0
    for pin in pins:
        with EventStatsMap.open(pin) as stats:
            written, lost = stats.read()
        total += written + lost
    return total


def sample(pins: list[str], client_ns: str, server_ip: str, rr: str, seconds: float) -> tuple[int, int]:
    """(events on both nodes, connections) of one ``rr crr`` run."""
    before = _events(pins)
    res = subprocess.run(in_ns(client_ns, rr, "crr", server_ip, str(RR_PORT), f"{seconds:g}"),
                         capture_output=True, text=True, timeout=seconds + 30)
    if res.returncode != 0:
        raise RuntimeError(f"crr {client_ns} -> {server_ip}: {res.stderr.strip()}")
    return _events(pins) - before, int(res.stdout.split()[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.crr_events", description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one rr crr sample")
    parser.add_argument("--rounds", type=int, default=3, help="samples per setting, interleaved")
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="membrane-crr-events-")
    per_conn: dict[str, list[float]] = {name: [] for name, _ in SETTINGS}
    try:
        rr = build_rr(workdir)
        with bench_lab(2) as lab:
            membrane(lab, "apply", "-f", "-", input=PODS)
            pods = wait_pods(lab, ["bench-srv", "bench-cli-remote"])
            paths = LabPaths(lab)
            server_ns = paths.pod_netns("default", "bench-srv")
            client_ns = paths.pod_netns("default", "bench-cli-remote")
            pins = [paths.bpffs_dir(n.name) for n in load_record(lab).topology.nodes]  # type: ignore[union-attr]
            servers = Servers(server_ns, rr)
            try:
                wait_listening(server_ns)
                for _ in range(args.rounds):
                    for name, agg in SETTINGS:
                        for pin in pins:
                            with ConfigMap.open(pin) as config:
                                config.set_aggregation(agg)
                        events, conns = sample(pins, client_ns, pods["bench-srv"]["status"]["podIP"], rr,
                                               args.seconds)
                        per_conn[name].append(events / conns if conns else float("nan"))
                        print(f"  {name:36} {conns:6} connections, {events:7} events: "
                              f"{per_conn[name][-1]:.2f} per connection", flush=True)
            finally:
                servers.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\ncross-node TCP_CRR, events per connection (both nodes), min / median / max:")
    for name, values in per_conn.items():
        ordered = sorted(values)
        print(f"  {name:36} {ordered[0]:.2f} / {ordered[len(ordered) // 2]:.2f} / {ordered[-1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
