"""The lab's daemons (etcd, operator, agents, kubelet, relay): how each starts, under a supervisor.

Every daemon runs under ``membrane.lab.supervisor``, which restarts it with backoff when it exits
(agents also when they stop answering their health check). The lab record keeps the supervisor's
PID; the daemon's own PID, its restarts and its last exit are in ``<run dir>/supervise/<name>.json``
(``daemon_state``). ``lab stop``/``start``/``restart`` act on the supervisor, like ``systemctl``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass

from membrane.api.agent_config import AgentConfig
from membrane.api.operator_config import OperatorConfig
from membrane.lab import processes
from membrane.lab.paths import LabPaths
from membrane.lab.record import load_record
from membrane.lab.supervisor import SupervisedState, read_state
from membrane.lab.topology import LabTopology
from membrane.model.naming import NETNS_DIR

ETCD_BIN = "/usr/bin/etcd"
UNDERLAY_DEVICE = "eth1"  # each node namespace's link to the lab's underlay bridge (builder.py)
MAX_TXN_OPS = 1024  # one `membrane apply` is one transaction: allow big manifests


class LabError(Exception):
    pass


def _bin(name: str) -> str:
    return os.path.join(os.path.dirname(sys.executable), name)


@dataclass
class DaemonSpec:
    argv: list[str]
    log: str
    cwd: str | None = None


def agent_config(lab: str, node: str, cluster: str) -> AgentConfig:
    """What a lab node's agent is told: the lab's etcd, and its directories under the lab's."""
    paths = LabPaths(lab)
    return AgentConfig(node=node, etcd_endpoints=(paths.etcd_endpoint,), cluster=cluster,
                       underlay_device=UNDERLAY_DEVICE, run_dir=paths.run_dir, state_dir=paths.run_dir,
                       bpf_pin_dir=paths.bpffs_lab_dir, tls_dir=paths.tls_dir)


def agent_config_file(lab: str, node: str) -> str:
    return f"{LabPaths(lab).run_dir}/config/agent-{node}.json"


def write_agent_config(lab: str, cfg: AgentConfig) -> str:
    """The agent's config file (JSON, which its YAML loader reads); returns its path."""
    path = agent_config_file(lab, cfg.node)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(cfg.to_file_data(), fh, indent=2)
    os.replace(tmp, path)
    return path


def daemon_specs(lab: str, topo: LabTopology) -> dict[str, DaemonSpec]:
    """How each daemon of a lab is started (also used to restart one). Agents get a config file
    (``<run dir>/config/agent-<node>.json``) and nothing else."""
    paths = LabPaths(lab)
    cluster = topo.config.cluster_name
    operator = OperatorConfig(etcd_endpoints=(paths.etcd_endpoint,), cluster=cluster, run_dir=paths.run_dir)
    peer = "unix://etcd-peer.sock:2380"
    specs = {
        "etcd": DaemonSpec(
            [ETCD_BIN, "--name", "etcd", "--data-dir", f"{paths.etcd_dir}/data",
             "--listen-client-urls", "unix://etcd.sock:2379", "--advertise-client-urls", "unix://etcd.sock:2379",
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", f"etcd={peer}",
             "--max-txn-ops", str(MAX_TXN_OPS), "--log-level", "warn", "--logger", "zap"],
            f"{paths.log_dir}/etcd.log", cwd=paths.run_dir),
        "operator": DaemonSpec(
            ["nsenter", f"--net={NETNS_DIR}/{paths.node_netns(topo.nodes[0].name)}", _bin("membrane-operator"),
             "--etcd-endpoints", operator.etcd_endpoint, "--cluster", operator.cluster, "--run-dir", operator.run_dir], f"{paths.log_dir}/operator.log"),
        "kubelet": DaemonSpec(
            [sys.executable, "-m", "membrane.lab.kubelet", "--lab", lab, "--cluster", cluster],
            f"{paths.log_dir}/kubelet.log"),
        # The relay dials every node's :4244 over the underlay, so it lives in a node namespace.
        "relay": DaemonSpec(["nsenter", f"--net={NETNS_DIR}/{paths.node_netns(topo.nodes[0].name)}", sys.executable,
                             "-m", "membrane.lab.relay_main", "--lab", lab], f"{paths.log_dir}/relay.log"),
    }
    for node in topo.nodes:
        config_file = write_agent_config(lab, agent_config(lab, node.name, cluster))
        specs[f"agent-{node.name}"] = DaemonSpec(
            ["nsenter", f"--net={NETNS_DIR}/{paths.node_netns(node.name)}", _bin("membrane-agent"),
             "--config-file", config_file], f"{paths.log_dir}/agent-{node.name}.log")
    from membrane.lab import frr  # FRR in the router namespace when BGP is on (membrane.lab.frr)

    if frr.wanted(topo):
        specs.update(frr.specs(lab, topo))
    return specs


def state_path(lab: str, name: str) -> str:
    return f"{LabPaths(lab).run_dir}/supervise/{name}.json"


def daemon_state(lab: str, name: str) -> SupervisedState | None:
    """The supervised daemon's PID, restarts and last exit (None before its supervisor first wrote it)."""
    return read_state(state_path(lab, name))


def spawn_supervised(lab: str, name: str, spec: DaemonSpec) -> processes.ProcRecord:
    """Start ``name``'s supervisor (which starts the daemon); returns the supervisor's record."""
    paths = LabPaths(lab)
    os.makedirs(os.path.dirname(state_path(lab, name)), exist_ok=True)
    argv = [sys.executable, "-m", "membrane.lab.supervisor", "--state", state_path(lab, name)]
    if name == "etcd":
        # A killed etcd leaves its unix sockets behind and refuses to start on top of them.
        for sock in (paths.etcd_socket, f"{paths.run_dir}/etcd-peer.sock:2380"):
            argv += ["--remove", sock]
    if name.startswith("agent-"):
        argv += ["--health-socket", paths.agent_socket(name.removeprefix("agent-"))]
    return processes.spawn([*argv, "--", *spec.argv], spec.log, cwd=spec.cwd)


def stop_daemon(lab: str, name: str) -> None:
    record = load_record(lab)
    if record is None:
        raise LabError(f"lab {lab!r} not found")
    rec = record.processes.get(name)
    if rec is None:
        raise LabError(f"no daemon {name!r} in lab {lab!r} (daemons: {', '.join(sorted(record.processes))})")
    processes.stop(rec)


def start_daemon(lab: str, name: str) -> processes.ProcRecord:
    """Start ``name`` under a new supervisor; returns the daemon's record (the supervisor's if it is slow)."""
    record = load_record(lab)
    if record is None:
        raise LabError(f"lab {lab!r} not found")
    specs = daemon_specs(lab, record.topology)
    if name not in specs:
        raise LabError(f"no daemon {name!r} in lab {lab!r} (daemons: {', '.join(sorted(specs))})")
    old = record.processes.get(name)
    if old is not None and processes.is_alive(old):
        raise LabError(f"{name} is already running (pid {old.pid})")
    record.processes[name] = sup = spawn_supervised(lab, name, specs[name])
    record.save()
    for _ in range(100):
        state = daemon_state(lab, name)
        if state is not None and state.state == "running" and (child := state.record) and processes.is_alive(child):
            return child
        time.sleep(0.05)
    return sup
