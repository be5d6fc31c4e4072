"""CPU cost of WireGuard while a benchmark runs: ``python -m bench.wg_cpu LAB-PREFIX`` beside
``MEMBRANE_BENCH_SET="encryption.enabled=true" python -m bench datapath``.

Every second it reads each lab node's wireguard-go (by the PID its agent reports in the UAPI socket's
directory: the process serving the socket) for CPU time (/proc/PID/stat utime + stime) and its peers'
byte counters (UAPI ``get``), keeping the last value seen per process and per device, since both go with
the lab. On SIGINT/SIGTERM, or when the labs are gone after having been seen, it prints the totals: CPU
seconds of wireguard-go, gigabits sent through the devices, and CPU seconds per gigabit (= cores per
Gbit/s). Indicative: it counts every byte any benchmark sent between nodes during the watch.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time

from membrane.datapath.linux.wireguard import WireguardError, uapi_get
from membrane.lab.paths import RUN_ROOT

TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return -1.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def _wireguard_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-x", "wireguard-go"], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def main(argv: list[str]) -> int:
    prefix = argv[0] if argv else ""
    cpu: dict[int, float] = {}
    sent: dict[str, int] = {}
    seen = False
    stop = {"now": False}
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.update(now=True))
    start = time.monotonic()
    while not stop["now"]:
        socks = glob.glob(f"{RUN_ROOT}/{prefix}*/nodes/*/wireguard/run/*.sock")
        for sock in socks:
            try:
                state = uapi_get(sock)
            except WireguardError:
                continue
            sent[sock] = max(sent.get(sock, 0), sum(p.tx_bytes for p in state.peers.values()))
        if socks:
            seen = True
            for pid in _wireguard_pids():
                if (secs := _cpu_seconds(pid)) >= 0:
                    cpu[pid] = max(cpu.get(pid, 0.0), secs)
        elif seen:
            break
        time.sleep(1.0)
    cpu_s = sum(cpu.values())
    gbit = sum(sent.values()) * 8 / 1e9
    per = f"{cpu_s / gbit:.2f} CPU-s per Gbit (cores per Gbit/s)" if gbit else "no traffic seen"
    print(f"wireguard-go: {len(cpu)} process(es), {cpu_s:.1f} CPU-s over {time.monotonic() - start:.0f} s watched; "
          f"{gbit:.2f} Gbit sent through {len(sent)} device(s); {per}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
