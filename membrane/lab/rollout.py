"""Rolling the agents onto a new configuration, one node at a time (``kubectl rollout restart ds/cilium``).

An agent reads the cluster configuration when it starts, so an agent is *updated* when the
configuration it runs (``GET /v1/config``) is the stored one. The rollout restarts every agent that
is not, through its supervisor (``lab restart agent-<node>``), and waits for it to be ready and
updated before the next. The BPF programs and maps stay in the kernel while an agent restarts, so
established connections keep flowing. ``status`` is computed from the agents themselves, as
``kubectl rollout status`` counts updated, available pods.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from membrane.api.unixhttp import APIError, request_json
from membrane.lab import daemons, release
from membrane.lab.paths import LabPaths
from membrane.lab.record import load_record
from membrane.model.config import ClusterConfig

AGENT_READY_TIMEOUT = 120.0


class RolloutError(Exception):
    pass


@dataclass
class AgentRollout:
    node: str
    updated: bool  # runs the stored configuration
    ready: bool  # answers its health check as ready


def _ask(lab: str, node: str, path: str) -> Any:
    try:
        return request_json(LabPaths(lab).agent_socket(node), "GET", path, timeout=3)
    except (OSError, APIError):
        return None


def _normal(config: dict[str, Any]) -> dict[str, Any]:
    return ClusterConfig.from_dict(config).to_dict()


def agent_state(lab: str, node: str, desired: dict[str, Any]) -> AgentRollout:
    answer = _ask(lab, node, "/v1/config")
    health = _ask(lab, node, "/healthz")
    updated = isinstance(answer, dict) and _normal(answer.get("config") or {}) == desired
    return AgentRollout(node, updated, bool(isinstance(health, dict) and health.get("ok")))


def _nodes(lab: str) -> list[str]:
    record = load_record(lab)
    if record is None:
        raise RolloutError(f"lab {lab!r} not found")
    return [n.name for n in record.topology.nodes]


def status(lab: str) -> list[AgentRollout]:
    desired = _normal(release.current(lab).config.to_dict())
    return [agent_state(lab, node, desired) for node in _nodes(lab)]


def restart_agents(lab: str, progress: Callable[[str], None], timeout: float = AGENT_READY_TIMEOUT,
                   every: bool = False) -> int:
    """Restart, one at a time, every agent not running the stored configuration (``every``: all of
    them, as ``kubectl rollout restart``); returns how many."""
    desired = _normal(release.current(lab).config.to_dict())
    restarted = 0
    for node in _nodes(lab):
        if not every and agent_state(lab, node, desired).updated:
            continue
        name = f"agent-{node}"
        progress(f"restarting {name}")
        try:
            daemons.stop_daemon(lab, name)
            daemons.start_daemon(lab, name)
        except daemons.LabError as exc:
            raise RolloutError(f"{name}: {exc}") from None
        deadline = time.monotonic() + timeout
        while True:
            state = agent_state(lab, node, desired)
            if state.updated and state.ready:
                break
            if time.monotonic() > deadline:
                what = "ready" if state.updated else "running the new configuration"
                raise RolloutError(f"{name} is not {what} after {timeout:.0f}s; the rollout stopped there "
                                   f"(see {LabPaths(lab).log_dir}/{name}.log)")
            time.sleep(0.3)
        restarted += 1
        progress(f"{name} ready with the new configuration")
    return restarted
