"""Probe TCP targets over and over from inside one pod, timestamped (run through ``membrane exec``).

Usage: ``python3 probe_loop.py SPEC_JSON``. SPEC is ``{"targets": [["203.0.113.12", 80], ...],
"seconds": 3.0, "every": 0.05, "timeout": 0.3}``. Prints ``ready`` once it is about to start, then
every ``every`` seconds starts one connect per target (each a new connection, so conntrack never
carries an earlier verdict) for ``seconds``; at the end one JSON object
``{"probes": [[start (time.time()), ip, port, connected], ...]}``. Standard library only.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from typing import Any


def connect(ip: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def run(spec: dict[str, Any]) -> list[list[Any]]:
    every, timeout = float(spec.get("every", 0.05)), float(spec.get("timeout", 0.3))
    out: list[list[Any]] = []
    lock = threading.Lock()

    def one(ip: str, port: int) -> None:
        start = time.time()
        ok = connect(ip, port, timeout)
        with lock:
            out.append([start, ip, port, ok])

    threads = []
    print("ready", flush=True)
    end = time.monotonic() + float(spec.get("seconds", 3.0))
    while time.monotonic() < end:
        for ip, port in spec["targets"]:
            thread = threading.Thread(target=one, args=(ip, int(port)), daemon=True)
            thread.start()
            threads.append(thread)
        time.sleep(every)
    for thread in threads:
        thread.join()
    return sorted(out)


if __name__ == "__main__":
    print(json.dumps({"probes": run(json.loads(sys.argv[1]))}), flush=True)
