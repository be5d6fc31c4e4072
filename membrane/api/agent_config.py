"""The agent's own configuration (``AgentConfig``), from flags, a config file and MEMBRANE_* variables.

This is what one host needs to know to run the agent: where etcd is, its node name, the cluster,
the underlay device and the directories for sockets, state and BPF pins. Cluster-wide settings
(routing mode, masquerade, Hubble, …) are not here: every agent reads them from the store
(``/membrane/<cluster>/config``, written by ``membrane helm install/upgrade``), as cilium-agent reads
its ConfigMap. The lab builds one AgentConfig per node (membrane.lab.daemons) and writes it as the
agent's config file; nothing else about the lab reaches the agent.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from membrane.model.options import Option, OptionError

AGENT_OPTIONS: tuple[Option, ...] = (
    Option("node", "this node's name, as in its Node object in the store", required=True),
    Option("etcd-endpoints", "etcd client URLs (http://host:port or unix://path:port); the first is used",
           ("http://127.0.0.1:2379",), kind="list"),
    Option("cluster", "cluster name: the store prefix /membrane/<cluster>/", "default"),
    Option("underlay-device", "the node's network device towards the other nodes (NodePort, masquerade, "
           "direct routes, L2 announcements)", "eth0"),
    Option("run-dir", "directory of the agent's sockets: agent-<node>.sock (API), hubble-<node>.sock, "
           "metrics-<node>.sock", "/var/run/membrane"),
    Option("state-dir", "directory of the node's local state (state.json and endpoints/*.json, one file "
           "per endpoint, kept over restarts)", "/var/lib/membrane"),
    Option("bpf-pin-dir", "bpffs directory where the node's maps and programs are pinned",
           "/sys/fs/bpf/membrane"),
    Option("tls-dir", "Hubble TLS files: ca.crt, hubble-server-<node>.crt/.key (empty: <run-dir>/tls)", ""),
    Option("debug", "log at debug level", False, kind="bool"),
)


@dataclass(frozen=True)
class AgentConfig:
    node: str
    etcd_endpoints: tuple[str, ...] = ("http://127.0.0.1:2379",)
    cluster: str = "default"
    underlay_device: str = "eth0"
    run_dir: str = "/var/run/membrane"
    state_dir: str = "/var/lib/membrane"
    bpf_pin_dir: str = "/sys/fs/bpf/membrane"
    tls_dir: str = ""
    debug: bool = False

    def __post_init__(self) -> None:
        if not self.node:
            raise OptionError("node: required")
        if not self.etcd_endpoints:
            raise OptionError("etcd-endpoints: at least one URL is needed")
        for name in ("run_dir", "state_dir", "bpf_pin_dir"):
            if not os.path.isabs(getattr(self, name)):
                raise OptionError(f"{name.replace('_', '-')}: {getattr(self, name)!r} must be an absolute path")

    @property
    def etcd_endpoint(self) -> str:
        return self.etcd_endpoints[0]

    @property
    def api_socket(self) -> str:
        return f"{self.run_dir}/agent-{self.node}.sock"

    @property
    def hubble_socket(self) -> str:
        return f"{self.run_dir}/hubble-{self.node}.sock"

    @property
    def metrics_socket(self) -> str:
        return f"{self.run_dir}/metrics-{self.node}.sock"

    @property
    def hubble_tls_dir(self) -> str:
        return self.tls_dir or f"{self.run_dir}/tls"

    def to_file_data(self) -> dict[str, object]:
        """The config file form (option names as keys): what the lab writes for each agent."""
        data = {k.replace("_", "-"): v for k, v in asdict(self).items()}
        data["etcd-endpoints"] = list(self.etcd_endpoints)
        return data
