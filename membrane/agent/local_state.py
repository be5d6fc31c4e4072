"""What an agent keeps on its node's disk so a restart finds its endpoints and IP allocations again.

One JSON file, ``/run/membrane/<lab>/nodes/<node>/state.json``, written atomically (tmp + rename)
after every change, like Cilium's endpoint state directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LocalState:
    pod_cidr: str = ""
    router_ip: str = ""
    ipam: dict[str, Any] = field(default_factory=dict)
    endpoints: list[dict[str, Any]] = field(default_factory=list)


def load_state(path: str) -> LocalState:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return LocalState()
    return LocalState(
        pod_cidr=data.get("pod_cidr", ""),
        router_ip=data.get("router_ip", ""),
        ipam=data.get("ipam", {}),
        endpoints=data.get("endpoints", []),
    )


def save_state(path: str, state: LocalState) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        # One compact json.dumps (the C encoder in one go; json.dump with ``indent`` streams many small
        # chunks through Python, ~5× slower): this is written after every endpoint change, per pod start.
        fh.write(json.dumps(
            {"pod_cidr": state.pod_cidr, "router_ip": state.router_ip, "ipam": state.ipam, "endpoints": state.endpoints},
            separators=(",", ":"),
        ))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
