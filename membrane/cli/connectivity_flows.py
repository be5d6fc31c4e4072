"""Flow validation for ``membrane connectivity test`` (cilium-cli's ``--flow-validation``): the flows
Hubble recorded for an action must agree with what the action saw.

Validated are the actions between two pod IPs (pod-to-pod, client-to-client): an action that had to
succeed needs a FORWARDED ``to-endpoint`` flow from its source to its destination and no policy drop;
one that had to be dropped needs a DROPPED flow with a policy reason (133 POLICY_DENIED, 181
POLICY_DENY). Flows are read through ``membrane observe`` (the lab's relay), since the action's final
attempt began.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

from membrane.cli.connectivity_suite import ActionSpec

MODES = ("warning", "strict", "disabled")
POLICY_DROPS = {"POLICY_DENIED", "POLICY_DENY"}
VALIDATED = ("pod-to-pod", "client-to-client")


def validated(spec: ActionSpec) -> bool:
    return spec.scenario in VALIDATED and bool(spec.src_ip and spec.dst_ip)


def check(flows: list[dict[str, Any]], expect_ok: bool) -> str | None:
    """None when the flows show what the action needed, else what is missing or wrong."""
    drops = [f for f in flows if f.get("verdict") == "DROPPED"]
    policy_drops = [f for f in drops if f.get("drop_reason_desc") in POLICY_DROPS]
    delivered = [f for f in flows if f.get("verdict") == "FORWARDED"
                 and f.get("trace_observation_point") == "TO_ENDPOINT"]
    if expect_ok:
        if policy_drops:
            return f"policy drop recorded ({policy_drops[0].get('drop_reason_desc')} on {policy_drops[0].get('node_name')})"
        return None if delivered else "no FORWARDED to-endpoint flow recorded"
    return None if policy_drops else "no policy drop recorded" + (
        f" (drops: {', '.join(sorted({str(f.get('drop_reason_desc')) for f in drops}))})" if drops else "")


def since_text(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fetch(lab: str, src_ip: str, dst_ip: str, since: float) -> list[dict[str, Any]]:
    """Flows from ``src_ip`` to ``dst_ip`` since ``since`` (epoch seconds), through the relay."""
    membrane = os.path.join(os.path.dirname(sys.executable), "membrane")
    proc = subprocess.run([membrane, "--lab", lab, "observe", "--from-ip", src_ip, "--to-ip", dst_ip,
                           "--since", since_text(since), "--last", "1000", "-o", "json"],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip() or f"membrane observe exit {proc.returncode}")
    return [json.loads(line)["flow"] for line in proc.stdout.splitlines() if line.strip()]


def validate(lab: str, spec: ActionSpec, expect_ok: bool, since: float, wait: float = 3.0) -> str | None:
    """What :func:`check` says, retried for ``wait`` seconds while flows reach the relay."""
    deadline = time.monotonic() + wait
    while True:
        try:
            problem = check(fetch(lab, spec.src_ip, spec.dst_ip, since), expect_ok)
        except (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError) as exc:
            problem = f"flows unavailable: {exc}"
        if problem is None or time.monotonic() >= deadline:
            return problem
        time.sleep(0.5)
