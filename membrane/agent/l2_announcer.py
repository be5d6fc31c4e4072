"""L2 announcements on this node: win a Service's lease, then answer ARP for its addresses.

Every ``leaseRetryPeriod`` (and on any change to policies, Services or Nodes) the announcer works out
which Services this node is a candidate for (membrane.l2announce.selection), applies the election
rules (membrane.l2announce.election) to their leases in etcd (membrane.store.l2_leases), and gives
the ARP responder (membrane.datapath.linux.arp_responder) the addresses of the Services it holds,
sending gratuitous ARP for each newly won address. All of this node's leases hang off one etcd lease
of ``leaseDuration``, renewed every ``leaseRetryPeriod``; when a renewal has not succeeded within
``leaseRenewDeadline`` the node stops answering until it holds its leases again. On a clean stop the
leases are released at once, so another node takes over within one retry period.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from membrane.datapath.linux.arp_responder import ARPResponder, Entry
from membrane.l2announce.election import Action, decide, renewal_ok
from membrane.l2announce.selection import LEASE_PREFIX, Announcement, announcements, lease_name, parse_policy
from membrane.model.config import ClusterConfig
from membrane.store.errors import StoreError
from membrane.store.etcd import EtcdClient
from membrane.store.l2_leases import L2Leases
from membrane.store.layout import StoreLayout
from membrane.store.lease import LeaseKeeper
from membrane.store.mirror import Mirror

log = logging.getLogger(__name__)
POLICY_PATH = "cilium.io/CiliumL2AnnouncementPolicy"


class L2Announcer:
    def __init__(self, node: str, client: EtcdClient, layout: StoreLayout, prefix: str, config: ClusterConfig,
                 services: Mirror, nodes: Mirror, devices: list[str],
                 responder: Callable[[], ARPResponder] = ARPResponder) -> None:
        self.node = node
        self.enabled = config.l2_announcements_enabled
        self.duration, self.renew_deadline, self.retry = config.l2_timers()
        self.policies = Mirror(client, f"{prefix}/resources/{POLICY_PATH}/")
        self.services = services
        self.nodes = nodes
        self.devices = devices
        self.leases = L2Leases(client, layout, node, self.duration)
        self.keeper = LeaseKeeper(client, max(1, math.ceil(self.duration)), interval=self.retry,
                                  retry=min(self.retry, 0.5), name="l2-announcements")
        self._new_responder = responder
        self.responder: ARPResponder | None = None
        self.held: dict[str, Announcement] = {}
        self.errors: list[str] = []

    def start(self, trigger: Callable[[], None]) -> None:
        self.policies.subscribe(lambda *_: trigger())
        self.policies.start()
        if self.enabled:
            self.responder = self._new_responder()
            self.keeper.start()

    def stop(self) -> None:
        """Release this node's leases (their etcd lease is revoked) and stop answering."""
        self.policies.stop()
        if self.responder is not None:
            self.responder.set_entries(set())
            self.responder.close()
        if self.enabled:
            self.keeper.stop(revoke=True)

    def _candidates(self) -> dict[str, Announcement]:
        policies = []
        self.errors = []
        for kv in self.policies.items():
            obj = json.loads(kv.value)
            try:
                policies.append(parse_policy(obj))
            except Exception as exc:  # stored before validation got stricter: report, skip
                self.errors.append(f"policy {obj.get('metadata', {}).get('name')}: {exc}")
        services = [json.loads(kv.value) for kv in self.services.items()]
        me = next((json.loads(kv.value) for kv in self.nodes.items()
                   if json.loads(kv.value)["metadata"]["name"] == self.node), None)
        labels = dict(((me or {}).get("metadata") or {}).get("labels") or {})
        return announcements(policies, services, labels, self.devices) if me is not None else {}

    def sync(self) -> None:
        if not self.enabled or self.responder is None:
            return
        lease = self.keeper.lease_id
        if not lease or not renewal_ok(time.time(), self.keeper.last_renewal, self.renew_deadline):
            if self.held:
                log.warning("L2 announcements: lease not renewed within %.1fs; no longer answering", self.renew_deadline)
            self._serve({})
            return
        candidates = self._candidates()
        holders = self.leases.holders()
        held: dict[str, Announcement] = {}
        names = {lease_name(k): k for k in candidates}
        for name, (holder, rev) in holders.items():
            if name.startswith(LEASE_PREFIX) and name not in names and decide(self.node, lease, False, holder) is Action.RELEASE:
                self._try(lambda n=name, r=rev: self.leases.release(n, r), f"release {name}")
        for key, ann in candidates.items():
            name = ann.lease_name
            current = holders.get(name)
            action = decide(self.node, lease, True, current[0] if current else None)
            if action is Action.KEEP:
                held[key] = ann
            elif action is Action.ACQUIRE and self._try(lambda n=name: self.leases.acquire(n, lease), f"acquire {name}"):
                log.info("L2 announcements: this node now announces %s (%s)", key, ", ".join(ann.ips))
                held[key] = ann
            elif action is Action.TAKE_OVER and current is not None and \
                    self._try(lambda n=name, r=current[1]: self.leases.take_over(n, lease, r), f"take over {name}"):
                held[key] = ann
        self._serve(held)

    def _try(self, fn: Callable[[], bool], what: str) -> bool:
        try:
            return fn()
        except StoreError as exc:
            log.warning("L2 announcements: %s: %s", what, exc)
            return False

    def _serve(self, held: dict[str, Announcement]) -> None:
        assert self.responder is not None
        before = {(ip, dev) for a in self.held.values() for ip in a.ips for dev in a.devices}
        wanted = {(ip, dev) for a in held.values() for ip in a.ips for dev in a.devices}
        self.held = held
        left = self.keeper.last_renewal + self.renew_deadline - time.time()
        self.responder.set_entries(wanted, time.monotonic() + left)
        for ip, dev in sorted(wanted - before):
            self.responder.gratuitous(ip, dev)

    def entries(self) -> list[dict[str, Any]]:
        rows: list[Entry] = self.responder.entries() if self.responder is not None else []
        owner = {ip: key for key, a in self.held.items() for ip in a.ips}
        return [{"ip": e.ip, "interface": e.device, "responses": e.responses, "service": owner.get(e.ip, "")}
                for e in rows]

    def status(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "lease-duration": self.duration, "renew-deadline": self.renew_deadline,
                "retry-period": self.retry, "announcing": sorted(self.held), "errors": self.errors}
