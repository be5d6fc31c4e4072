"""Which cluster a command addresses, and how the CLI reaches its store and its agents.

``--etcd URL`` (with ``--cluster``, default ``default``) addresses any Membrane cluster, lab or not:
the nodes are the store's Node objects and each agent's API socket is in its node entry
(``/membrane/<cluster>/nodes/<node>``: ``apiSocket``, ``hubbleSocket``, ``metricsSocket``), which
the agent publishes with its heartbeat. Without ``--etcd``, ``--lab NAME`` addresses a lab: the lab
commands (membrane.cli.lab_cmds) register how a lab name becomes a :class:`Target`, so no other
CLI module needs to know what a lab is. ``configure`` is called once per command by main.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from membrane.cli.arguments import CLIError

ETCD_ENV = "MEMBRANE_ETCD"
SOCKET_NAMES = {"apiSocket": "agent", "hubbleSocket": "hubble", "metricsSocket": "metrics"}


@dataclass(frozen=True)
class Target:
    etcd_endpoint: str
    cluster: str = "default"
    where: str = ""  # for messages: "lab 'x'" or "etcd URL"
    max_txn_ops: int = 128  # etcd's default --max-txn-ops
    run_dir: str = ""  # a lab's run directory (its sockets when the store has none, relay, TLS); "" elsewhere
    nodes: tuple[str, ...] = ()  # a lab's nodes, known without the store (which may be down)


_lab_target: Callable[[str], Target] | None = None
_current: Target | None = None


def register_lab(fn: Callable[[str], Target]) -> None:
    """How ``--lab NAME`` becomes a Target (set by membrane.cli.lab_cmds)."""
    global _lab_target
    _lab_target = fn


def configure(etcd: str | None, cluster: str | None) -> None:
    """The command's ``--etcd``/``--cluster`` (or $MEMBRANE_ETCD): when set they win over ``--lab``."""
    global _current
    endpoint = etcd or os.environ.get(ETCD_ENV, "")
    _current = Target(endpoint, cluster or "default", where=f"etcd {endpoint}") if endpoint else None


def target(lab: str) -> Target:
    if _current is not None:
        return _current
    if _lab_target is None:
        raise CLIError("no cluster to address: give --etcd URL (or $MEMBRANE_ETCD)")
    return _lab_target(lab)


def addressed_by_etcd() -> bool:
    return _current is not None


def cluster_store(lab: str) -> Any:
    """The ResourceStore of the addressed cluster."""
    from membrane.store.etcd import EtcdClient
    from membrane.store.resources import ResourceStore

    t = target(lab)
    return ResourceStore(EtcdClient(t.etcd_endpoint), t.cluster, max_txn_ops=t.max_txn_ops)


def node_entries(lab: str) -> dict[str, dict[str, Any]]:
    """The agents' node entries (heartbeat records) by node name; an agent that is down has none."""
    from membrane.store.errors import StoreError
    from membrane.store.etcd import EtcdClient

    t = target(lab)
    prefix = f"/membrane/{t.cluster}/nodes/"
    try:
        with EtcdClient(t.etcd_endpoint, timeout=5.0) as client:
            kvs, _rev = client.get_prefix(prefix)
    except (StoreError, OSError) as exc:
        if t.run_dir:  # a lab's agents are reachable at their usual sockets while its etcd is down
            return {}
        raise CLIError(f"{t.where}: store not reachable: {exc}") from None
    out = {}
    for kv in kvs:
        try:
            out[kv.key.removeprefix(prefix)] = json.loads(kv.value)
        except ValueError:
            continue
    return out


def node_names(lab: str) -> list[str]:
    """The cluster's nodes: its Node objects, and any node whose agent has an entry (a lab's own list
    when its store cannot be read)."""
    from membrane.store.errors import StoreError

    t = target(lab)
    try:
        names = {obj["metadata"]["name"] for obj in cluster_store(lab).list("core", "Node")[0]}
    except (StoreError, OSError) as exc:
        if t.nodes:
            return list(t.nodes)
        raise CLIError(f"{t.where}: store not reachable: {exc}") from None
    return sorted(names | set(t.nodes) | set(node_entries(lab)))


def pick_nodes(lab: str, only: str | None) -> list[str]:
    if only and only in target(lab).nodes:  # a lab knows its nodes: no store round trip (it may be down)
        return [only]
    names = node_names(lab)
    if only:
        if only not in names:
            raise CLIError(f"node {only!r} not in {target(lab).where} (nodes: {', '.join(names) or 'none'})")
        return [only]
    return names


def relay_target(lab: str) -> str:
    """The Hubble relay's gRPC target; only a lab's is known without ``--server``."""
    t = target(lab)
    if not t.run_dir:
        raise CLIError(f"{t.where}: the relay's address is not in the store: give --server ADDRESS")
    return f"unix://{t.run_dir}/relay.sock"


def agent_socket(lab: str, node: str, kind: str = "apiSocket") -> str:
    """Where node's agent serves its API (or ``hubbleSocket``/``metricsSocket``), from its node entry.
    A lab's agents use fixed names under its run directory, reachable while etcd is down."""
    t = target(lab)
    if t.run_dir:
        return f"{t.run_dir}/{SOCKET_NAMES[kind]}-{node}.sock"
    entry = node_entries(lab).get(node) or {}
    if entry.get(kind):
        return str(entry[kind])
    raise CLIError(f"node {node}: its agent has published no {kind} in {t.where} (is the agent running?)")
