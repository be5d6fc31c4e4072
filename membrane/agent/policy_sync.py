"""From policies and identities to the node's BPF policy map and per-endpoint enforcement flags.

One controller owns the policy repository (it is not thread-safe). Each run it folds the changes of
the policy and identity mirrors into the repository — which answers with the identities whose
policy may have changed — re-resolves only the local endpoints with those identities (or new ones),
and writes the map in one differential sync. Enforcement is switched on *after* the entries that
allow traffic are in the map, and switched off *before* they go, so no allowed connection is ever
refused in between.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from membrane.agent.node_network import NodeNetwork
from membrane.datapath.maps.policy import DIR_EGRESS, DIR_INGRESS, PolicyRule
from membrane.endpoint.model import Endpoint
from membrane.identity.allocator import decode_labels
from membrane.identity.labels import LabelSet
from membrane.identity.local import LocalIdentityAllocator
from membrane.identity.reserved import ENTITIES, entity_identities, reserved_identities
from membrane.model.errors import ValidationError
from membrane.policy.mapstate import PolicyEntry, ResolvedPolicy
from membrane.policy.repository import PolicyRepository
from membrane.policy.rules import Origin
from membrane.policy.translate import origin_of, rules_from_object
from membrane.store.mirror import Mirror

log = logging.getLogger(__name__)

HOST_IDENTITY = 1
RESYNC_MARGIN = 90.0  # seconds before PolicyMap's own resync: three ticks of the 30 s controller
POLICY_KINDS = {  # store key segment -> kind
    "cilium.io/CiliumNetworkPolicy": "CiliumNetworkPolicy",
    "cilium.io/CiliumClusterwideNetworkPolicy": "CiliumClusterwideNetworkPolicy",
    "networking.k8s.io/NetworkPolicy": "NetworkPolicy",
}


def label_map(labels: LabelSet) -> dict[str, str]:
    return {f"{lb.source}:{lb.key}": lb.value for lb in labels}


def map_rules(ep_id: int, resolved: ResolvedPolicy) -> list[PolicyRule]:
    """The engine's prefix-form entries as map rules (a prefix of the port is a port range)."""
    out = []
    for e in resolved.entries:
        out.append(PolicyRule(ep_id, DIR_INGRESS if e.direction == "ingress" else DIR_EGRESS, e.identity,
                              e.protocol, *_port_range(e), deny=e.deny))
    if resolved.ingress_enforced:
        # allow-localhost (Cilium's default): the node itself may always reach its pods.
        out.append(PolicyRule(ep_id, DIR_INGRESS, HOST_IDENTITY))
    return out


def _port_range(e: PolicyEntry) -> tuple[int, int]:
    if e.protocol == 0 or e.port_prefix_len == 0:
        return 0, 0
    if e.port_prefix_len >= 16:
        return e.port, 0
    return e.port, e.port | ((1 << (16 - e.port_prefix_len)) - 1)


class PolicySync:
    def __init__(self, net: NodeNetwork, policy_mirrors: list[Mirror], identity_mirror: Mirror, identities_prefix: str,
                 mode: Callable[[], str], cluster: str, pod_of: Callable[[str, str], dict[str, Any] | None]) -> None:
        self.net = net
        self.policy_mirrors = policy_mirrors
        self.identity_mirror = identity_mirror
        self.identities_prefix = identities_prefix
        self.mode = mode
        self.cluster = cluster
        self.pod_of = pod_of
        # called with (policy object, message) when a policy is refused or only partly enforced (events)
        self.on_import: Callable[[dict[str, Any], str], None] | None = None
        self.repo = PolicyRepository()
        self.cidrs = LocalIdentityAllocator()
        self.identities: dict[int, LabelSet] = {}
        self._policies: dict[str, tuple[int, Origin]] = {}  # store key -> (mod revision, origin)
        self._ids_seen: dict[str, int] = {}  # identity key -> mod revision
        self._resolved: dict[int, tuple[int, ResolvedPolicy]] = {}  # ep id -> (identity, policy)
        self._last_mode = ""
        self._map_synced = False  # the first sync writes the whole map
        self.last_sync_seconds = 0.0
        for n, labels in reserved_identities().items():
            self._set_identity(n, labels, set())

    # ---- inputs -----------------------------------------------------------------------------------
    def _set_identity(self, n: int, labels: LabelSet, dirty: set[int]) -> None:
        self.identities[n] = labels
        dirty |= self.repo.upsert_identity(n, label_map(labels))
        dirty.add(n)

    def _drop_identity(self, n: int, dirty: set[int]) -> None:
        self.identities.pop(n, None)
        dirty |= self.repo.remove_identity(n)

    def _fold_identities(self, dirty: set[int]) -> None:
        seen = {}
        prefix = f"{self.identities_prefix}id/"
        for kv in self.identity_mirror.items():
            if not kv.key.startswith(prefix):
                continue
            seen[kv.key] = kv.mod_revision
            if self._ids_seen.get(kv.key) == kv.mod_revision:
                continue
            try:
                self._set_identity(int(kv.key[len(prefix):]), decode_labels(kv.value), dirty)
            except ValueError as exc:
                log.warning("ignoring identity %s: %s", kv.key, exc)
        for key in [k for k in self._ids_seen if k not in seen]:
            self._drop_identity(int(key[len(prefix):]), dirty)
        self._ids_seen = seen

    def _fold_policies(self, dirty: set[int]) -> bool:
        seen: dict[str, int] = {}
        changed = False
        for mirror in self.policy_mirrors:
            for kv in mirror.items():
                seen[kv.key] = kv.mod_revision
                old = self._policies.get(kv.key)
                if old is not None and old[0] == kv.mod_revision:
                    continue
                obj = None
                try:
                    obj = json.loads(kv.value)
                    origin = origin_of(obj)
                    rules = rules_from_object(obj)
                except (ValueError, KeyError, ValidationError) as exc:
                    log.warning("policy %s not applied: %s", kv.key, exc)
                    if self.on_import is not None and isinstance(obj, dict):
                        self.on_import(obj, f"policy not imported: {exc}")
                    continue
                if self.on_import is not None:
                    skipped = sorted({u for r in rules for u in r.unsupported} | ({"L7 rules"} if any(
                        r.has_l7 for r in rules) else set()))
                    if skipped:
                        self.on_import(obj, f"imported, but not enforced here: {', '.join(skipped)}")
                dirty |= self.repo.set_policy(origin, rules)
                self._policies[kv.key] = (kv.mod_revision, origin)
                changed = True
        for key in [k for k in self._policies if k not in seen]:
            dirty |= self.repo.delete_policy(self._policies.pop(key)[1])
            changed = True
        return changed

    def _fold_cidrs(self, dirty: set[int]) -> None:
        """Every prefix a rule names gets a node-local CIDR identity (labels cidr:<p>, reserved:world)."""
        want = {str(p) for p in self.repo.prefixes()}
        have = self.cidrs.prefixes()
        for prefix in want - set(have):
            n = self.cidrs.cidr_identity(prefix)
            labels = self.cidrs.labels(n)
            if labels is not None:
                self._set_identity(n, labels, dirty)
        for prefix in set(have) - want:
            n = have[prefix]
            self.cidrs.release(prefix)
            if self.cidrs.labels(n) is None:
                self._drop_identity(n, dirty)

    def cidr_prefixes(self) -> dict[str, int]:
        return self.cidrs.prefixes()

    # ---- the controller run -------------------------------------------------------------------------
    def sync(self) -> None:
        start = time.monotonic()
        dirty: set[int] = set()
        self._fold_identities(dirty)
        self._fold_policies(dirty)
        self._fold_cidrs(dirty)
        mode = self.mode()
        full = mode != self._last_mode
        self._last_mode = mode
        dp = self.net.datapath
        if dp is None:
            return
        entities = {name: entity_identities(name, self.identities, self.cluster) for name in ENTITIES}
        endpoints = {ep.id: ep for ep in self.net.endpoints.list() if ep.identity}
        changed: set[int] = set()
        for ep_id in [i for i in self._resolved if i not in endpoints]:
            del self._resolved[ep_id]
            changed.add(ep_id)
        recomputed = 0
        for ep in endpoints.values():
            cached = self._resolved.get(ep.id)
            if cached is not None and cached[0] == ep.identity and ep.identity not in dirty and not full:
                continue
            resolved = self.repo.resolve(ep.identity, entities=entities, mode=mode, named_ports=self._named_ports(ep))
            self._resolved[ep.id] = (ep.identity, resolved)
            recomputed += 1
            changed.add(ep.id)
        if changed or full or not self._map_synced:
            # A full pass (first sync, enforcement mode change) rewrites every endpoint's slots; otherwise
            # only the changed endpoints' slots are computed and diffed: one policy change on a node with
            # 30 000 slots costs its own entries, not a rebuild of all of them.
            self._apply(endpoints, None if full or not self._map_synced else changed, reread=False)
            self._map_synced = True
        # Every few minutes the whole map is read back and made exact (repairing what other writers
        # changed) — after any change of this run is in place, so that read (a syscall pair per slot,
        # ~1 s for 30 000 slots) never delays enforcement.
        if dp.policy.shadow_age() > dp.policy.RESYNC_SECONDS - RESYNC_MARGIN:
            self._apply(endpoints, None, reread=True)
        elif not changed and not full:
            return
        self.last_sync_seconds = time.monotonic() - start
        log.info("policy: %d endpoint(s) recomputed, %d rules, in %.1f ms", recomputed, self.repo.rule_count(),
                 self.last_sync_seconds * 1e3)

    def _apply(self, endpoints: dict[int, Endpoint], scope: set[int] | None, reread: bool | None = None) -> None:
        """Enforcement flags and map slots of the endpoints in ``scope`` (None: all, and the whole map)."""
        dp = self.net.datapath
        assert dp is not None
        want_flags = {ep_id: (r.ingress_enforced, r.egress_enforced) for ep_id, (_i, r) in self._resolved.items()}
        touched = endpoints if scope is None else {i: ep for i, ep in endpoints.items() if i in scope}
        # 1. endpoints losing enforcement stop enforcing before their entries go
        for ep_id, ep in touched.items():
            ing, egr = want_flags.get(ep_id, (False, False))
            self.net.set_policy_enforcement(ep.container_id, ep.ifname, ep.policy_ingress and ing,
                                            ep.policy_egress and egr)
        # 2. the map holds exactly the resolved entries of the endpoints we have (of those in scope)
        rules = [rule for ep_id, (_i, r) in self._resolved.items() if scope is None or ep_id in scope
                 for rule in map_rules(ep_id, r)]
        result = dp.policy.sync(rules, scope, reread=reread)
        if result.added or result.changed or result.removed:
            log.info("policy map: +%d ~%d -%d entries", result.added, result.changed, result.removed)
        # 3. endpoints gaining enforcement start enforcing once their allows are in place
        for ep_id, ep in touched.items():
            ing, egr = want_flags.get(ep_id, (False, False))
            self.net.set_policy_enforcement(ep.container_id, ep.ifname, ing, egr)

    def _named_ports(self, ep: Endpoint) -> dict[str, tuple[int, str]]:
        pod = self.pod_of(ep.namespace, ep.pod_name) or {}
        ports: dict[str, tuple[int, str]] = {}
        for c in pod.get("spec", {}).get("containers", []) or []:
            for p in c.get("ports", []) or []:
                if p.get("name"):
                    ports[p["name"]] = (int(p["containerPort"]), p.get("protocol", "TCP"))
        return ports

    def resolved(self) -> list[dict[str, Any]]:
        out = []
        for ep_id, (identity, r) in sorted(self._resolved.items()):
            out.append({"endpoint": ep_id, "identity": identity, "ingress_enforced": r.ingress_enforced,
                        "egress_enforced": r.egress_enforced, "entries": len(r.entries)})
        return out
