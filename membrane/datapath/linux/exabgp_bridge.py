"""The API process ExaBGP runs for the agent: commands in through a FIFO, session states out to a file.

``python -m membrane.datapath.linux.exabgp_bridge CMD_FIFO STATE_FILE``. ExaBGP starts it (its
``process`` block) and reads API commands from its stdout; the agent writes those commands into
``CMD_FIFO``, which the bridge holds open read-write so it never sees end-of-file when a writer
goes away. ExaBGP writes JSON events to the bridge's stdin; the bridge keeps, per peer address, the
last session state (``up``, ``down``, ``connected``) with its time and the prefixes received (not
those whose AS path holds our own ASN, which a BGP speaker discards as a loop), and
rewrites ``STATE_FILE`` (atomically) on each change. When ExaBGP exits, stdin closes and so does
the bridge.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any


def _save(path: str, state: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(state, fh)
    os.replace(tmp, path)


def _apply_event(state: dict[str, Any], event: dict[str, Any]) -> bool:
    neighbor = event.get("neighbor") or {}
    peer = str((neighbor.get("address") or {}).get("peer") or "")
    if not peer:
        return False
    entry = state.setdefault(peer, {"state": "idle", "since": time.time(), "received": []})
    if event.get("type") == "state":
        new = str(neighbor.get("state") or "")
        entry.update(state=new, since=time.time(), reason=str(neighbor.get("reason") or ""))
        if new != "up":
            entry["received"] = []
        return True
    if event.get("type") == "update":
        update = (neighbor.get("message") or {}).get("update") or {}
        received = set(entry.get("received") or [])
        local_asn = (neighbor.get("asn") or {}).get("local")
        looped = local_asn is not None and local_asn in ((update.get("attribute") or {}).get("as-path") or [])
        for family in (update.get("announce") or {}).values():
            for _nexthop, nlris in (family or {}).items():
                prefixes = {str(n.get("nlri") if isinstance(n, dict) else n) for n in nlris or []}
                # Our own AS in the path: a BGP speaker drops it (loop), so it is not "received".
                received = received - prefixes if looped else received | prefixes
        for nlris in (update.get("withdraw") or {}).values():
            received -= {str(n.get("nlri") if isinstance(n, dict) else n) for n in nlris or []}
        entry["received"] = sorted(received)
        return True
    return False


def _pump_commands(fifo: str) -> None:
    fd = os.open(fifo, os.O_RDWR)  # read-write: no EOF when the agent's writer closes
    with os.fdopen(fd, "r") as src:
        for line in src:
            sys.stdout.write(line if line.endswith("\n") else line + "\n")
            sys.stdout.flush()


def main(argv: list[str]) -> int:
    fifo, state_path = argv[1], argv[2]
    threading.Thread(target=_pump_commands, args=(fifo,), daemon=True).start()
    state: dict[str, Any] = {}
    _save(state_path, state)
    for line in sys.stdin:
        line = line.strip()
        if not line.startswith("{"):
            continue  # "done" / "error" acknowledgements of our commands
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if _apply_event(state, event):
            _save(state_path, state)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
