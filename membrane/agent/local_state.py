"""What an agent keeps on its node's disk so a restart finds its endpoints and IP allocations again.

One JSON file, ``/run/membrane/<lab>/nodes/<node>/state.json``, written atomically (tmp + rename)
after every change, like Cilium's endpoint state directory. Each endpoint's part is encoded once per
change of that endpoint (``EncodedEndpoints``), not once per write of the file: a pod start used to
re-encode every endpoint of the node up to three times (issue 16: O(n) per pod).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from membrane.endpoint.model import EndpointTable


@dataclass
class LocalState:
    pod_cidr: str = ""
    router_ip: str = ""
    ipam: dict[str, Any] = field(default_factory=dict)
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    # The endpoints already JSON-encoded, one object each (``EncodedEndpoints.take``); written instead of
    # ``endpoints`` when set.
    encoded: list[str] | None = None


class EncodedEndpoints:
    """Each endpoint's JSON for the state file, encoded again only after ``changed`` named it. Not
    thread-safe: the node lock covers ``changed`` and ``take``."""

    def __init__(self) -> None:
        self._encoded: dict[tuple[str, str], str] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._all = True

    def changed(self, key: tuple[str, str] | None = None) -> None:
        """Endpoint ``key`` was added, changed or removed (None: any of them may have)."""
        if key is None:
            self._all = True
        else:
            self._dirty.add(key)

    def take(self, table: EndpointTable) -> list[str]:
        """Every endpoint of ``table``, encoded: the changed ones now, the others as they were."""
        if self._all:
            self._encoded = {ep.key: _encode(ep.to_dict()) for ep in table.list()}
            self._all = False
        else:
            for key in self._dirty:
                ep = table.get(*key)
                if ep is None:
                    self._encoded.pop(key, None)
                else:
                    self._encoded[key] = _encode(ep.to_dict())
        self._dirty.clear()
        return list(self._encoded.values())


def _encode(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


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
        if state.encoded is None:
            fh.write(_encode({"pod_cidr": state.pod_cidr, "router_ip": state.router_ip, "ipam": state.ipam,
                              "endpoints": state.endpoints}))
        else:
            head = _encode({"pod_cidr": state.pod_cidr, "router_ip": state.router_ip, "ipam": state.ipam})
            fh.write(f'{head[:-1]},"endpoints":[{",".join(state.encoded)}]}}')
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
