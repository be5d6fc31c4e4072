"""Where one lab keeps its sockets, state and pins on the host.

A lab is addressed by its name (``--lab``, default ``membrane``). Everything it makes on the host
carries that name so that two labs can run side by side and ``lab delete`` can find all of it:
sockets and state under ``/run/membrane/<lab>/``, network namespaces prefixed ``<lab>.`` (a dot: lab names cannot hold one, so
``lab-a`` never matches ``lab-a-2``), bpffs pins
under ``/sys/fs/bpf/membrane/<lab>/<node>/``. The lab turns these into each daemon's configuration
(membrane.lab.daemons); the daemons themselves never see a lab name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from membrane.model.naming import NAME_MAX

RUN_ROOT = "/run/membrane"
BPFFS_ROOT = "/sys/fs/bpf/membrane"


@dataclass(frozen=True)
class LabPaths:
    """Where one lab keeps its sockets, state and pins."""

    lab: str

    @property
    def run_dir(self) -> str:
        return f"{RUN_ROOT}/{self.lab}"

    @property
    def etcd_dir(self) -> str:
        return f"{self.run_dir}/etcd"

    @property
    def etcd_socket(self) -> str:
        # etcd wants unix URLs of the form host:port; the socket file carries the port in its name.
        return f"{self.run_dir}/etcd.sock:2379"

    @property
    def etcd_endpoint(self) -> str:
        return f"unix://{self.etcd_socket}"

    @property
    def state_file(self) -> str:
        return f"{self.run_dir}/lab.json"

    @property
    def log_dir(self) -> str:
        return f"{self.run_dir}/logs"

    @property
    def kubelet_socket(self) -> str:
        return f"{self.run_dir}/kubelet.sock"

    @property
    def tls_dir(self) -> str:
        """Hubble's CA and certificates (directory 0700, keys 0600)."""
        return f"{self.run_dir}/tls"

    @property
    def hubble_ca_cert(self) -> str:
        return f"{self.tls_dir}/ca.crt"

    @property
    def hubble_ca_key(self) -> str:
        return f"{self.tls_dir}/ca.key"

    def hubble_server_pair(self, node: str) -> tuple[str, str]:
        """The certificate and key a node's Hubble server presents on TCP :4244."""
        return f"{self.tls_dir}/hubble-server-{node}.crt", f"{self.tls_dir}/hubble-server-{node}.key"

    @property
    def hubble_relay_client_pair(self) -> tuple[str, str]:
        """The relay's client certificate and key (also what ``membrane observe --tls`` can use)."""
        return f"{self.tls_dir}/hubble-relay-client.crt", f"{self.tls_dir}/hubble-relay-client.key"

    def agent_socket(self, node: str) -> str:
        return f"{self.run_dir}/agent-{node}.sock"

    def node_state_dir(self, node: str) -> str:
        return f"{self.run_dir}/nodes/{node}"

    def bpffs_dir(self, node: str) -> str:
        return f"{BPFFS_ROOT}/{self.lab}/{node}"

    @property
    def bpffs_lab_dir(self) -> str:
        return f"{BPFFS_ROOT}/{self.lab}"

    def router_netns(self, name: str) -> str:
        return f"{self.lab}.{name}"

    def node_netns(self, node: str) -> str:
        return f"{self.lab}.{node}"

    @property
    def underlay_netns(self) -> str:
        return f"{self.lab}.underlay"

    def pod_netns(self, namespace: str, pod: str) -> str:
        # Pod names can be long; a short stable hash keeps netns names unique and readable.
        digest = hashlib.sha1(f"{namespace}/{pod}".encode()).hexdigest()[:8]
        return f"{self.lab}.pod-{pod[:24]}-{digest}"

    @property
    def netns_prefix(self) -> str:
        return f"{self.lab}."

    def pod_log(self, namespace: str, pod: str, container: str = "") -> str:
        """``logs/pods/<ns>_<pod>[_<container>].log``; the file name stays within NAME_MAX.

        A pod name may be 253 characters, a namespace and a container name 63 each: together more
        than a file name may hold (255 bytes). A name that does not fit keeps its readable start
        and gets a hash of the whole ``ns/pod`` so that two long names never share a log.
        """
        tail = f"_{container}.log" if container else ".log"
        room = NAME_MAX - len(f"{namespace}_".encode()) - len(tail.encode())
        if len(pod.encode()) > room:
            digest = hashlib.sha1(f"{namespace}/{pod}".encode()).hexdigest()[:8]
            pod = pod.encode()[:room - len(digest) - 1].decode(errors="ignore") + "-" + digest
        return f"{self.log_dir}/pods/{namespace}_{pod}{tail}"
