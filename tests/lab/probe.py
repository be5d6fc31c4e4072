"""Probe many targets at once from inside one pod (run through ``membrane exec``); standard library only.

Usage: ``python3 probe.py SPEC_JSON``. SPEC is ``{"targets": [{"key": "x/a", "ip": "10.0.1.2"}, ...],
"ports": [80, 81], "protocols": ["TCP", "UDP"], "timeout": 1.0, "tries": 2, "sport_base": 20000}``.

Every (target, port, protocol) probe runs in its own thread. TCP connects and reads the answer until
the server closes; UDP sends a datagram and waits for the answer, ``tries`` times. Each probe binds
its own source port ``sport_base + index`` so that no probe reuses the 5-tuple of an earlier run,
which a conntrack entry of a previously allowed flow could still let through.

Prints one JSON object: ``{"results": [{"key", "port", "protocol", "answer", "error"}, ...]}``;
``answer`` is what the server sent (agnhost serve-hostname: the pod's hostname) or null.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from typing import Any


def probe_tcp(ip: str, port: int, sport: int, timeout: float) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", sport))
        sock.settimeout(timeout)
        sock.connect((ip, port))
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = sock.recv(256)
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks).decode(errors="replace")


def probe_udp(ip: str, port: int, sport: int, timeout: float, tries: int) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", sport))
        sock.settimeout(timeout)
        last: Exception = TimeoutError("no answer")
        for _ in range(max(1, tries)):
            sock.sendto(b"hostname", (ip, port))
            try:
                data, _addr = sock.recvfrom(256)
                return data.decode(errors="replace")
            except OSError as exc:  # timeout, or ICMP port unreachable (ECONNREFUSED)
                last = exc
        raise last


def run(spec: dict[str, Any]) -> list[dict[str, Any]]:
    timeout = float(spec.get("timeout", 1.0))
    tries = int(spec.get("tries", 2))
    sport = int(spec.get("sport_base", 0))
    jobs = []
    for target in spec["targets"]:
        for port in spec["ports"]:
            for protocol in spec["protocols"]:
                jobs.append({"key": target["key"], "ip": target["ip"], "port": int(port),
                             "protocol": protocol, "sport": sport + len(jobs) if sport else 0})
    results: list[dict[str, Any]] = [{} for _ in jobs]

    def work(i: int, job: dict[str, Any]) -> None:
        answer, error = None, None
        try:
            if job["protocol"] == "TCP":
                answer = probe_tcp(job["ip"], job["port"], job["sport"], timeout)
            elif job["protocol"] == "UDP":
                answer = probe_udp(job["ip"], job["port"], job["sport"], timeout, tries)
            else:
                error = f"protocol {job['protocol']} is not probed"
        except Exception as exc:  # any failure is an unanswered probe; keep the reason for the report
            error = f"{type(exc).__name__}: {exc}"
        results[i] = {"key": job["key"], "port": job["port"], "protocol": job["protocol"],
                      "answer": answer, "error": error}

    threads = [threading.Thread(target=work, args=(i, job), daemon=True) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps({"results": run(json.loads(argv[0]))}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
