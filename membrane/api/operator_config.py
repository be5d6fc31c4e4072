"""The operator's own configuration (``OperatorConfig``): where etcd is, the cluster and the
directory of its metrics socket; from flags, a config file and MEMBRANE_* variables (see
membrane.model.options). Cluster settings come from the store, as for the agent."""

from __future__ import annotations

import os
from dataclasses import dataclass

from membrane.model.options import Option, OptionError

OPERATOR_OPTIONS: tuple[Option, ...] = (
    Option("etcd-endpoints", "etcd client URLs (http://host:port or unix://path:port); the first is used",
           ("http://127.0.0.1:2379",), kind="list"),
    Option("cluster", "cluster name: the store prefix /membrane/<cluster>/", "default"),
    Option("run-dir", "directory of the operator's metrics socket (metrics-operator.sock)", "/var/run/membrane"),
    Option("debug", "log at debug level", False, kind="bool"),
)


@dataclass(frozen=True)
class OperatorConfig:
    etcd_endpoints: tuple[str, ...] = ("http://127.0.0.1:2379",)
    cluster: str = "default"
    run_dir: str = "/var/run/membrane"
    debug: bool = False

    def __post_init__(self) -> None:
        if not self.etcd_endpoints:
            raise OptionError("etcd-endpoints: at least one URL is needed")
        if not os.path.isabs(self.run_dir):
            raise OptionError(f"run-dir: {self.run_dir!r} must be an absolute path")

    @property
    def etcd_endpoint(self) -> str:
        return self.etcd_endpoints[0]

    @property
    def metrics_socket(self) -> str:
        return f"{self.run_dir}/metrics-operator.sock"
