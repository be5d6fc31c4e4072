"""``make demo``: bring up a 3-node lab and show a pod on one node reaching a pod on another.

The client's address must arrive unchanged at the server (``RemoteAddr`` = the client pod's IP):
native routing, no NAT. The lab stays up afterwards; ``make demo-down`` removes it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from membrane.lab.record import load_record

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFEST = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "demo.yaml")


def _membrane(lab: str, *args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
    argv = [os.path.join(os.path.dirname(sys.executable), "membrane"), "--lab", lab, *args]
    if not capture:
        print(f"\n$ membrane {' '.join(args)}", flush=True)
    return subprocess.run(argv, text=True, capture_output=capture)


def _pods(lab: str) -> list[dict]:
    out = _membrane(lab, "get", "pods", "-o", "json", capture=True)
    if out.returncode != 0:
        return []
    data = json.loads(out.stdout)
    return data.get("items", [data]) if data.get("kind") == "List" else [data]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="membrane-demo")
    parser.add_argument("--lab", default="membrane")
    args = parser.parse_args(argv)
    lab = args.lab
    record = load_record(lab)
    if record is None or record.state != "ready":
        if record is not None:
            _membrane(lab, "lab", "delete")
        if _membrane(lab, "lab", "create").returncode != 0:
            return 1
    else:
        print(f"lab {lab!r} is already up; reusing it")
    if _membrane(lab, "apply", "-f", MANIFEST).returncode != 0:
        return 1
    print("\nwaiting for pods to be Ready ...", flush=True)
    deadline = time.monotonic() + 90
    pods: list[dict] = []
    while time.monotonic() < deadline:
        pods = _pods(lab)
        ready = [p for p in pods if any(c.get("type") == "Ready" and c.get("status") == "True"
                                        for c in p.get("status", {}).get("conditions", []))]
        if len(pods) >= 3 and len(ready) == len(pods):
            break
        time.sleep(0.5)
    else:
        _membrane(lab, "get", "pods", "-o", "wide")
        print(f"pods did not become Ready in 90 s; see /run/membrane/{lab}/logs", file=sys.stderr)
        return 1
    _membrane(lab, "get", "nodes", "-o", "wide")
    _membrane(lab, "get", "pods", "-o", "wide")
    client = next(p for p in pods if p["metadata"]["name"] == "curl-pod")
    server = next(p for p in pods if p["metadata"]["name"].startswith("webpod-"))
    server_ip = server["status"]["podIP"]
    client_ip = client["status"]["podIP"]
    print(f"\ncurl-pod ({client_ip} on {client['spec']['nodeName']}) -> "
          f"{server['metadata']['name']} ({server_ip} on {server['spec']['nodeName']})")
    res = _membrane(lab, "exec", "curl-pod", "--", "curl", "-s", "--max-time", "5", f"http://{server_ip}/", capture=True)
    print(f"\n$ membrane exec curl-pod -- curl -s http://{server_ip}/")
    print(res.stdout.rstrip())
    if res.returncode != 0:
        print(f"curl failed: {res.stderr.strip()}", file=sys.stderr)
        return 1
    remote = next((line.split(": ", 1)[1] for line in res.stdout.splitlines() if line.startswith("RemoteAddr:")), "")
    if remote.rsplit(":", 1)[0] != client_ip:
        print(f"\nunexpected RemoteAddr {remote}: the client address was rewritten", file=sys.stderr)
        return 1
    print(f"\nOK: RemoteAddr {remote} is curl-pod's own IP: pod-to-pod across nodes, no NAT.")
    _membrane(lab, "endpoint", "list", "--node", server["spec"]["nodeName"])
    print(f"\nThe lab is still up. Explore it (membrane --lab {lab} get pods -o wide, membrane --lab {lab} status),"
          f"\nthen remove it with: make demo-down   (or: membrane --lab {lab} lab delete)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
