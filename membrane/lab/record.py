"""The lab's record of itself: ``/run/membrane/<lab>/lab.json``.

It holds the topology and every daemon the lab started (its supervisor's PID + start time; the daemon's own
PID, restarts and last exit are in the supervisor's state file, membrane.lab.daemons). ``lab delete`` reads it
first, then sweeps by name prefix and run directory so a crashed or half-built lab is removed too.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from membrane.lab.paths import RUN_ROOT, LabPaths
from membrane.lab.processes import ProcRecord
from membrane.lab.topology import LabTopology


@dataclass
class LabRecord:
    name: str
    topology: LabTopology
    created: float = field(default_factory=time.time)
    processes: dict[str, ProcRecord] = field(default_factory=dict)
    state: str = "creating"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created": self.created,
            "state": self.state,
            "topology": self.topology.to_dict(),
            "processes": {k: v.to_dict() for k, v in self.processes.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabRecord:
        return cls(
            name=data["name"],
            topology=LabTopology.from_dict(data["topology"]),
            created=data.get("created", 0.0),
            processes={k: ProcRecord.from_dict(v) for k, v in data.get("processes", {}).items()},
            state=data.get("state", "unknown"),
        )

    def save(self) -> None:
        path = LabPaths(self.name).state_file
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp"
        with open(tmp, "w") as fh:
            json.dump(self.to_dict(), fh, indent=2)
        os.replace(tmp, path)


def load_record(lab: str) -> LabRecord | None:
    try:
        with open(LabPaths(lab).state_file) as fh:
            return LabRecord.from_dict(json.load(fh))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError):
        return None


def list_labs() -> list[str]:
    try:
        return sorted(d for d in os.listdir(RUN_ROOT) if os.path.isdir(os.path.join(RUN_ROOT, d)))
    except FileNotFoundError:
        return []
