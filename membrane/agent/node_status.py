"""This node's presence in the store: two leases and the Node's conditions.

* The *liveness* lease (15 s) holds ``nodes/<name>``, the heartbeat record: it disappears soon after
  the agent dies or hangs, and the operator then marks the Node down (``membrane.model.node_conditions``).
* The *endpoint* lease (``ENDPOINT_LEASE_TTL``, 15 minutes as Cilium's kvstore leases) holds what says
  "these endpoints exist": ipcache entries and identity references. Its id is kept in the node's state
  directory, so an agent restarted within the TTL renews the same lease and nothing is withdrawn.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from membrane.endpoint.routing import NodeInfo
from membrane.ipcache.ownership import ENDPOINT_LEASE_TTL
from membrane.model.node_conditions import agent_conditions
from membrane.store.errors import StoreError
from membrane.store.etcd import EtcdClient
from membrane.store.mirror import Mirror
from membrane.store.resources import ResourceStore

log = logging.getLogger(__name__)

NODE_LEASE_TTL = 15
ROUTER_IP_ANNOTATION = "membrane.io/router-ip"


def timestamp(t: float) -> str:
    if not t:
        return "0001-01-01T00:00:00Z"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class NodeStatus:
    def __init__(self, client: EtcdClient, resources: ResourceStore, nodes_mirror: Mirror, prefix: str, node: str,
                 state_dir: str, me: Callable[[], NodeInfo | None], router_ip: Callable[[], str],
                 sockets: dict[str, str] | None = None) -> None:
        self.client = client
        self.resources = resources
        self.nodes_mirror = nodes_mirror
        self.prefix = prefix
        self.node = node
        self._lease_file = f"{state_dir}/endpoint-lease"
        self._me = me
        self._router_ip = router_ip
        self.sockets = dict(sockets or {})  # published so that clients find this agent from the store
        self.liveness_lease = 0
        self.endpoint_lease = 0

    def start(self) -> None:
        self.liveness_lease = self.client.lease_grant(NODE_LEASE_TTL)
        self.endpoint_lease = self._resume_endpoint_lease()

    def _resume_endpoint_lease(self) -> int:
        """The endpoint lease of our previous run if it is still alive, else a new one (remembered)."""
        try:
            with open(self._lease_file) as fh:
                old = int(fh.read().strip() or 0)
        except (OSError, ValueError):
            old = 0
        if old:
            try:
                if self.client.lease_keepalive_once(old) > 0:
                    log.info("endpoint lease %x of the previous run is alive: keeping it", old)
                    return old
            except StoreError as exc:
                log.info("endpoint lease %x of the previous run is gone: %s", old, exc)
        lease = self.client.lease_grant(ENDPOINT_LEASE_TTL)
        os.makedirs(os.path.dirname(self._lease_file), exist_ok=True)
        tmp = f"{self._lease_file}.tmp"
        with open(tmp, "w") as fh:
            fh.write(str(lease))
        os.replace(tmp, self._lease_file)
        return lease

    def publish(self) -> None:
        """Controller body: renew both leases, write the heartbeat record, mark the Node up."""
        if not self.liveness_lease or self.client.lease_keepalive_once(self.liveness_lease) <= 0:
            self.liveness_lease = self.client.lease_grant(NODE_LEASE_TTL)
        if not self.endpoint_lease or self.client.lease_keepalive_once(self.endpoint_lease) <= 0:
            log.warning("endpoint lease %x expired: publishing every endpoint again", self.endpoint_lease)
            self.endpoint_lease = self._resume_endpoint_lease()
        me = self._me()
        record = {
            "name": self.node,
            "ipv4": me.internal_ip if me else "",
            "podCIDRs": list(me.pod_cidrs) if me else [],
            "routerIP": self._router_ip(),
            "heartbeat": time.time(),
            **self.sockets,
        }
        self.client.put(f"{self.prefix}/nodes/{self.node}", json.dumps(record), lease=self.liveness_lease)
        self._mark_up()

    def _mark_up(self) -> None:
        """NetworkUnavailable=False, Ready=True (written only when it changes: Nodes are watched cluster-wide)."""
        router_ip = self._router_ip()
        kv = self.nodes_mirror.get(f"{self.prefix}/resources/core/Node/_/{self.node}")
        if kv is not None:
            current = json.loads(kv.value)
            conds = current.get("status", {}).get("conditions", [])
            router = current.get("metadata", {}).get("annotations", {}).get(ROUTER_IP_ANNOTATION)
            if router == router_ip and agent_conditions(conds, True, "") is None:
                return

        def mark(obj: dict[str, Any] | None) -> dict[str, Any]:
            if obj is None:
                raise RuntimeError(f"Node {self.node} does not exist")
            status = obj.setdefault("status", {})
            status["conditions"] = agent_conditions(status.get("conditions", []), True,
                                                    timestamp(time.time())) or status.get("conditions", [])
            obj["metadata"].setdefault("annotations", {})[ROUTER_IP_ANNOTATION] = router_ip
            return obj

        self.resources.update(("core", "Node", "_", self.node), mark)
