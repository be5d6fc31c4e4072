"""Transparent encryption on this node (encryption.enabled, encryption.type=wireguard).

The agent owns one wireguard-go process serving ``cilium_wg0`` (UDP 51871), started in the node's
namespace and tracked by the PID it was given. The node's private key is generated once and kept in
the agent's state directory; its public key goes on this node's Node object
(``network.cilium.io/wg-pub-key``), where the other agents read it. Peers (one per other node, see
membrane.endpoint.encryption) are a desired table applied to the device by a reconciler, through the
UAPI socket; other nodes' pod CIDRs are routed into the device, with blackhole routes behind.

Fail closed: a pod CIDR of a node whose key is not known yet is still routed into the device, where
no peer covers it, so WireGuard drops the packets; if wireguard-go dies its device and routes go and
the blackholes drop pod traffic until the agent (told by a watcher thread blocked on the process)
has started a new one, configured it and re-applied every peer.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from membrane.agent.node_status import ROUTER_IP_ANNOTATION
from membrane.datapath.linux import links
from membrane.datapath.linux import wireguard as wg
from membrane.endpoint.encryption import (
    WG_DEVICE,
    WG_PORT,
    WG_PUBKEY_ANNOTATION,
    WgNode,
    WgPeer,
    desired_peers,
    encrypted_cidrs,
    key_b64,
    key_hex,
    status_text,
)
from membrane.state.reconciler import Reconciler
from membrane.state.table import Table
from membrane.store.mirror import Mirror
from membrane.store.resources import ResourceStore

log = logging.getLogger(__name__)


def wg_node(obj: dict[str, Any]) -> WgNode:
    meta = obj.get("metadata", {})
    annotations = meta.get("annotations") or {}
    addrs = obj.get("status", {}).get("addresses", [])
    ip = next((a["address"] for a in addrs if a.get("type") == "InternalIP"), "")
    spec = obj.get("spec", {})
    cidrs = tuple(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))
    return WgNode(meta["name"], ip, cidrs, annotations.get(ROUTER_IP_ANNOTATION, ""),
                  annotations.get(WG_PUBKEY_ANNOTATION, ""))


class _PeerOps:
    """Reconciler target: the device's peers through its UAPI socket (keys are base64 public keys)."""

    def __init__(self, sock: Callable[[], str]) -> None:
        self._sock = sock

    def update(self, key: str, peer: WgPeer) -> None:
        wg.set_peer(self._sock(), key_hex(key), peer.endpoint, peer.allowed_ips)

    def delete(self, key: str) -> None:
        wg.remove_peer(self._sock(), key_hex(key))

    def prune(self, keys: set[str]) -> None:
        for hexkey in wg.uapi_get(self._sock()).peers:
            if key_b64(hexkey) not in keys:
                wg.remove_peer(self._sock(), hexkey)


class WireguardSync:
    def __init__(self, node: str, state_dir: str, nodes_mirror: Mirror, resources: ResourceStore,
                 port: int = WG_PORT) -> None:
        self.node = node
        self.port = port
        self.nodes_mirror = nodes_mirror
        self.resources = resources
        self.dir = f"{state_dir}/wireguard"
        self.process = wg.WireguardProcess(WG_DEVICE, f"{self.dir}/run", f"{self.dir}/wireguard-go.log")
        self.table: Table[str, WgPeer] = Table("wireguard-peers", initialized=False)
        self.reconciler: Reconciler[str, WgPeer] = Reconciler(
            self.table, _PeerOps(lambda: self.process.socket_path), name="wireguard-peers", prune_interval=30.0)
        self.on_exit: Callable[[], None] = lambda: None  # the controller's trigger
        self.private_key = ""
        self.public_key = ""
        self.restarts = 0
        self.last_restart_reason = ""
        self.waiting: dict[str, str] = {}
        self._lock = threading.RLock()

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Blackholes for every known remote pod CIDR first, then key, device, peers, routes."""
        wg.sync_routes(WG_DEVICE, encrypted_cidrs(self.node, self._nodes()))
        self.private_key, self.public_key = self._keys()
        self._start_device()
        self.sync()

    def _keys(self) -> tuple[str, str]:
        path = f"{self.dir}/private.key"
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        try:
            with open(path) as fh:
                private = fh.read().strip()
        except FileNotFoundError:
            private = wg.generate_private_key()
            fd = os.open(f"{path}.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(private + "\n")
            os.replace(f"{path}.tmp", path)
            log.info("wireguard: generated this node's private key (%s)", path)
        return private, wg.public_key(private)

    def _start_device(self) -> None:
        if links.link_exists(WG_DEVICE):  # left by a process we no longer own
            links.delete_link(WG_DEVICE)
        pid = self.process.start()
        links.set_up(WG_DEVICE)
        wg.configure_device(self.process.socket_path, key_hex(self.private_key), self.port)
        proc = self.process.proc
        threading.Thread(target=self._watch, args=(proc,), name="wireguard-watch", daemon=True).start()
        self.reconciler.refresh()  # a new device has no peers: every row again
        log.info("wireguard: %s up (wireguard-go PID %d, UDP %d, public key %s)", WG_DEVICE, pid, self.port,
                 self.public_key)

    def _watch(self, proc: Any) -> None:
        proc.wait()
        if proc is self.process.proc:
            log.warning("wireguard: wireguard-go (PID %d) exited with %s", proc.pid, proc.returncode)
            self.on_exit()

    def stop(self) -> None:
        self.process.stop()

    # ---- controller body --------------------------------------------------------------------
    def sync(self) -> None:
        with self._lock:
            if problem := self.process.problem():
                self.restarts += 1
                self.last_restart_reason = problem
                log.warning("wireguard: %s: restarting it (restart %d)", problem, self.restarts)
                self.process.stop()
                self._start_device()
            nodes = self._nodes()
            written, removed = wg.sync_routes(WG_DEVICE, encrypted_cidrs(self.node, nodes))
            if written or removed:
                log.info("wireguard routes: %d written, %d removed", written, removed)
            peers, self.waiting = desired_peers(self.node, nodes, self.port)
            self.table.replace_all(peers)
            self.table.mark_initialized()
            self.reconciler.run_once()
            self._publish_key(nodes)

    def _nodes(self) -> list[WgNode]:
        return [wg_node(json.loads(kv.value)) for kv in self.nodes_mirror.items()]

    def _publish_key(self, nodes: list[WgNode]) -> None:
        me = next((n for n in nodes if n.name == self.node), None)
        if me is not None and me.public_key == self.public_key:
            return

        def annotate(obj: dict[str, Any] | None) -> dict[str, Any]:
            if obj is None:
                raise RuntimeError(f"Node {self.node} does not exist")
            obj["metadata"].setdefault("annotations", {})[WG_PUBKEY_ANNOTATION] = self.public_key
            return obj

        self.resources.update(("core", "Node", "_", self.node), annotate)
        log.info("wireguard: published public key on Node %s", self.node)

    # ---- status -----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """models.EncryptionStatus (cilium-dbg status / encrypt status), plus the process we run."""
        try:
            state = wg.uapi_get(self.process.socket_path)
            error = ""
        except wg.WireguardError as exc:
            state, error = wg.DeviceState(), str(exc)
        now = time.time()
        peers = [{"public-key": key_b64(p.public_key), "endpoint": p.endpoint, "allowed-ips": list(p.allowed_ips),
                  "last-handshake-time": p.last_handshake, "transfer-rx": p.rx_bytes, "transfer-tx": p.tx_bytes,
                  "handshake-age-seconds": int(now - p.last_handshake) if p.last_handshake else None}
                 for p in state.peers.values()]
        return {
            "mode": "Wireguard",
            "msg": error or status_text(WG_DEVICE, self.public_key, self.port, len(peers)),
            "wireguard": {"interfaces": [{"name": WG_DEVICE, "public-key": self.public_key,
                                          "listen-port": state.listen_port or self.port, "peer-count": len(peers),
                                          "peers": peers}],
                          "node-encryption": "Disabled"},
            "process": {"pid": self.process.pid, "restarts": self.restarts,
                        "last-restart-reason": self.last_restart_reason},
            "waiting": self.waiting,
        }
