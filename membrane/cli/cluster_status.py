"""``membrane status``: the cluster view of ``cilium status`` — every daemon of the lab by name, the
agents per node (desired / ready / available), the pods the agents manage, versions, and each
failing component with the node it is on. ``--wait`` polls until all is well (or the wait runs out).

The per-agent page (``cilium-dbg status``) is ``membrane dbg status --node N`` (``membrane status
--node N`` still shows it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from membrane.cli.arguments import CLIError
from membrane.cli.tabwriter import tabwrite

VERSION = "0.1.0"
LOGO = ("    /¯¯\\", " /¯¯\\__/¯¯\\", " \\__/¯¯\\__/", " /¯¯\\__/¯¯\\", " \\__/¯¯\\__/", "    \\__/")


@dataclass
class Daemon:
    name: str  # lab daemon name: etcd, operator, kubelet, relay, agent-<node>
    state: str  # what lab status says: running, STOPPED (lab stop), UNRESPONSIVE, ...
    ok: bool
    errors: list[str] = field(default_factory=list)  # failing components an agent reports
    warnings: list[str] = field(default_factory=list)  # what recovered but the user should know (speaker restarts)
    proxy: dict[str, Any] | None = None  # an agent's L7 proxy status (ip, port-range, total-redirects)


@dataclass
class ClusterStatus:
    daemons: list[Daemon]
    pods_total: int
    pods_managed: int

    @property
    def agents(self) -> list[Daemon]:
        return [d for d in self.daemons if d.name.startswith("agent-")]

    def errors(self) -> list[tuple[str, str, str]]:
        """(component, node or daemon, message) for everything that is not well."""
        out = []
        for d in self.daemons:
            where = d.name.removeprefix("agent-")
            component = "membrane-agent" if d.name.startswith("agent-") else d.name
            if not d.ok:
                out.append((component, where, f"{d.name}: {d.state}"))
            out += [(component, where, f"{d.name}: {e} failing") for e in d.errors]
        return out


def _one(daemons: list[Daemon], name: str) -> Daemon | None:
    return next((d for d in daemons if d.name == name), None)


def _state_word(d: Daemon | None) -> str:
    if d is None:
        return "disabled"
    return "OK" if d.ok and not d.errors else f"{len(d.errors) or 1} errors"


def render(status: ClusterStatus) -> str:
    agents = status.agents
    ready = sum(1 for a in agents if a.ok and not a.errors)
    running = sum(1 for a in agents if a.ok)
    membrane = "OK" if ready == len(agents) else f"{len(agents) - ready} errors"
    head = [("Membrane:", membrane), ("Operator:", _state_word(_one(status.daemons, "operator"))),
            ("Hubble Relay:", _state_word(_one(status.daemons, "relay"))),
            ("KVStore (etcd):", _state_word(_one(status.daemons, "etcd"))),
            ("Kubelet:", _state_word(_one(status.daemons, "kubelet"))), ("ClusterMesh:", "disabled")]
    lines = [f"{logo}\t{key}\t{value}" for logo, (key, value) in zip(LOGO, head, strict=True)]
    lines.append("")
    lines.append(f"DaemonSet\tmembrane-agent\tDesired: {len(agents)}, Ready: {ready}/{len(agents)}, "
                 f"Available: {running}/{len(agents)}")
    for name, label in (("operator", "membrane-operator"), ("relay", "hubble-relay")):
        d = _one(status.daemons, name)
        if d is not None:
            lines.append(f"Deployment\t{label}\tDesired: 1, Ready: {int(d.ok)}/1, Available: {int(d.ok)}/1")
    containers = []
    labels = {"operator": "membrane-operator", "relay": "hubble-relay", "etcd": "etcd", "kubelet": "kubelet"}
    for label, group in (("membrane-agent", agents),
                         *((labels[n], [d for d in status.daemons if d.name == n]) for n in labels)):
        up = sum(1 for d in group if d.ok)
        if group:
            text = f"Running: {up}" + (f", Not running: {len(group) - up}" if up < len(group) else "")
            containers.append((label, text))
    for i, (label, text) in enumerate(containers):
        lines.append(f"{'Containers:' if i == 0 else ''}\t{label}\t{text}")
    for i, a in enumerate(agents):
        state = "OK" if a.ok and not a.errors else (a.state if not a.ok else ", ".join(a.errors) + " failing")
        lines.append(f"{'Agents:' if i == 0 else ''}\t{a.name.removeprefix('agent-')}\t{state}")
    lines.append(f"Cluster Pods:\t{status.pods_managed}/{status.pods_total} managed by Membrane")
    lines.append(f"Image versions\tmembrane-agent\tmembrane {VERSION}: {len(agents)}")
    proxies = [(a.name.removeprefix("agent-"), a.proxy) for a in agents if a.proxy is not None]
    if proxies:
        total = sum(int(p.get("total-redirects", 0)) for _n, p in proxies)
        ips = ", ".join(f"{n} {p.get('ip', '')}" for n, p in proxies)
        lines.append(f"Proxy Status:\tOK, ip {ips}, {total} redirects active on ports "
                     f"{proxies[0][1].get('port-range', '')}")
    for i, (component, where, message) in enumerate(status.errors()):
        lines.append(f"{'Errors:' if i == 0 else ''}\t{component}\t{where}\t{message}")
    warnings = [(a.name.removeprefix("agent-"), w) for a in agents for w in a.warnings]
    for i, (where, message) in enumerate(warnings):
        lines.append(f"{'Warnings:' if i == 0 else ''}\tmembrane-agent\t{where}\t{message}")
    return tabwrite("\n".join(lines), minwidth=0, padding=4)


def to_json(status: ClusterStatus) -> dict[str, Any]:
    return {"daemons": [{"name": d.name, "state": d.state, "ok": d.ok, "errors": d.errors, "warnings": d.warnings}
                        for d in status.daemons],
            "pods": {"total": status.pods_total, "managed": status.pods_managed},
            "errors": [{"component": c, "where": w, "message": m} for c, w, m in status.errors()]}


# ---- gathering -------------------------------------------------------------------------------------------
def gather(lab: str) -> ClusterStatus:
    """A lab: its daemons as ``lab status`` sees them. Another cluster (``--etcd``): the store, then
    one agent per node, found from the store (membrane.cli.target)."""
    from membrane.api.unixhttp import APIError, request_json
    from membrane.cli.dbg_status import agent_warnings, failing_components
    from membrane.cli.target import addressed_by_etcd, agent_socket, node_entries, node_names

    if addressed_by_etcd():
        entries = node_entries(lab)
        rows = [("etcd", "running", True)]
        rows += [(f"agent-{n}", "running" if n in entries else "NO HEARTBEAT", n in entries) for n in node_names(lab)]
    else:
        from membrane.cli.lab_cmds import lab_daemons

        rows = lab_daemons(lab)
    found: list[Daemon] = []
    managed_ips: set[str] = set()
    for name, text, ok in rows:
        daemon = Daemon(name, text, ok)
        if ok and name.startswith("agent-"):
            try:
                socket = agent_socket(lab, name.removeprefix("agent-"))
                page = request_json(socket, "GET", "/v1/status", timeout=5)
                daemon.errors = failing_components(page)
                daemon.warnings = agent_warnings(page)
                daemon.proxy = page.get("proxy") if isinstance(page, dict) else None
                for ep in request_json(socket, "GET", "/v1/endpoints", timeout=5):
                    for addr in (((ep.get("status") or {}).get("networking") or {}).get("addressing") or []):
                        managed_ips.add(addr.get("ipv4", ""))
            except (OSError, APIError, CLIError) as exc:
                daemon.ok, daemon.state = False, f"UNRESPONSIVE ({exc})"[:60]
        found.append(daemon)
    total = managed = 0
    try:
        from membrane.cli.target import cluster_store

        for pod in cluster_store(lab).list("core", "Pod")[0]:
            if (pod.get("spec") or {}).get("hostNetwork") or not (pod.get("spec") or {}).get("nodeName"):
                continue
            total += 1
            managed += (pod.get("status") or {}).get("podIP") in managed_ips
    except Exception:  # the store is down: etcd's row says so
        pass
    return ClusterStatus(found, total, managed)


def healthy(status: ClusterStatus) -> bool:
    return not status.errors()


def run(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + (args.wait_duration if args.wait else 0)
    while True:
        status = gather(args.lab)
        if healthy(status) or time.monotonic() >= deadline:
            break
        time.sleep(2)
    if args.output == "json":
        print(json.dumps(to_json(status), indent=2))
    else:
        print(render(status).rstrip("\n"))
    if not healthy(status) and args.wait:
        print(f"error: membrane is not ready after {args.wait_duration:.0f}s", file=sys.stderr)
    return 0 if healthy(status) else 1
