"""From policies and identities to the node's BPF policy map and per-endpoint enforcement flags.

One controller owns the policy repository (it is not thread-safe). Each run it folds the changes of
the policy and identity mirrors into the repository — which answers with the identities whose
policy may have changed — re-resolves only the local endpoints with those identities (or new ones),
and replaces only those endpoints' rows in the desired table of map slots (``PolicySlot -> Verdict``,
indexed by endpoint). The ``bpf-policy`` reconciler writes the changed rows; the controller runs its
step itself, so it knows which rows are in. Enforcement is switched on *after* the entries that allow
traffic are in the map (an endpoint with a row not applied yet keeps its old flags; the controller
retries), and switched off *before* they go, so no allowed connection is ever refused in between.
The reconciler's thread retries failed rows with backoff and, every ``PolicyMap.RESYNC_SECONDS``,
reads the map back and repairs what other writers changed.

The CIDR identities the rules need reach the BPF ipcache in the same run, around the map write:
first the new identities' own entries (inert: no address carries those numbers yet), then the new
prefixes in the ipcache (before, the address is still ``world`` and matches a ``0.0.0.0/0`` allow its
deny should beat), then the rest of the rules, and released prefixes only after the rules are gone
(else a stale prefix keeps a number that may come to mean another). So every packet meets either
the old policy or the new one for its destination, never a new identity without its entries.

Egress named ports resolve against the peers' ports (``peer_ports``: identity -> name -> numbers,
the table ``policy simulate`` builds too).

With the host firewall (``host_firewall`` enabled) the node's host endpoint is one more endpoint here:
resolved from the host policies selecting the node (:mod:`membrane.policy.hostpolicy`), its rows under
``HOST_ENDPOINT_ID`` in the same map, its enforcement switched in mb_host_ep with the same ordering.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from membrane.agent.host_firewall import HostFirewall
from membrane.agent.ipcache_sync import NotApplied
from membrane.agent.node_network import NodeNetwork
from membrane.agent.policy_endpoints import PolicyEndpoints
from membrane.agent.policy_fqdn import FQDNPolicy
from membrane.agent.policy_rows import HOST_IDENTITY, label_map, map_rules
from membrane.datapath.maps.ops import PolicyOps
from membrane.datapath.maps.policy import (
    PolicyMap,
    PolicySlot,
    Verdict,
    desired_slots,
)
from membrane.endpoint.model import Endpoint
from membrane.fqdn.cache import DNSCache
from membrane.fqdn.identities import FQDN_MIN_IDENTITY, FQDNIdentities
from membrane.identity.allocator import decode_labels
from membrane.identity.labels import LabelSet
from membrane.identity.local import LocalIdentityAllocator
from membrane.identity.node_cidr import host_labels_with_cidr, remote_node_labels
from membrane.identity.reserved import ENTITIES, entity_identities, reserved_identities, reserved_labels
from membrane.model.errors import ValidationError
from membrane.policy.context import PolicyContext, uses_context
from membrane.policy.hostpolicy import HOST_ENDPOINT_ID
from membrane.policy.mapstate import ResolvedPolicy
from membrane.policy.namedports import NamedPorts, PeerNamedPorts, pod_named_ports
from membrane.policy.nodecidr import covered, covered_remote_nodes, host_prefix
from membrane.policy.repository import PolicyRepository
from membrane.policy.rules import Origin
from membrane.policy.translate import origin_of, rules_from_object
from membrane.state.reconciler import Reconciler
from membrane.state.table import Table
from membrane.store.mirror import Mirror

log = logging.getLogger(__name__)

POLICY_KINDS = {  # store key segment -> kind
    "cilium.io/CiliumNetworkPolicy": "CiliumNetworkPolicy",
    "cilium.io/CiliumClusterwideNetworkPolicy": "CiliumClusterwideNetworkPolicy",
    "networking.k8s.io/NetworkPolicy": "NetworkPolicy",
}


class PolicySync(FQDNPolicy):
    def __init__(self, net: NodeNetwork, policy_mirrors: list[Mirror], identity_mirror: Mirror, identities_prefix: str,
                 mode: Callable[[], str], cluster: str, pod_of: Callable[[str, str], dict[str, Any] | None],
                 peer_ports: Callable[[], PeerNamedPorts] = dict,
                 publish_ipcache: Callable[[], None] = lambda: None, *,
                 context: Callable[[], PolicyContext] = PolicyContext,
                 clock: Callable[[], float] | None = None,
                 host_firewall: HostFirewall | None = None,
                 cidr_match_nodes: Callable[[], bool] = lambda: False,
                 node_addresses: Callable[[], dict[str, bool]] = dict) -> None:
        self.net = net
        self.policy_mirrors = policy_mirrors
        self.identity_mirror = identity_mirror
        self.identities_prefix = identities_prefix
        self.mode = mode
        self.cluster = cluster
        self.pod_of = pod_of
        self.peer_ports = peer_ports
        self.publish_ipcache = publish_ipcache  # writes the BPF ipcache from cidr_prefixes(), synchronously
        self.context = context  # the CIDR groups and Services policies name (cidrGroupRef, toServices)
        self.host_firewall = host_firewall  # the host endpoint (hostFirewall.enabled), None: no host endpoint
        self.cidr_match_nodes = cidr_match_nodes  # policyCIDRMatchMode has nodes
        self.node_addresses = node_addresses  # every node's InternalIP -> whether it is this node's
        self._node_cidrs: dict[str, int] = {}  # remote node IP -> its CIDR identity (nodes mode)
        self._context = PolicyContext()
        # called with (policy object, message) when a policy is refused or only partly enforced (events)
        self.on_import: Callable[[dict[str, Any], str], None] | None = None
        # L7 redirects: (endpoint id, resolved policy) -> proxy port per (direction, protocol, port); the
        # agent's proxy manager (agent/proxy_sync.py), None = no proxies (L7 rules stay plain L4 allows)
        self.proxy_ports: Callable[[int, ResolvedPolicy], Mapping[tuple[str, int, int], int]] | None = None
        self.repo = PolicyRepository()
        self.cidrs = LocalIdentityAllocator(max_id=FQDN_MIN_IDENTITY - 1)  # the rest is for FQDN IPs
        self.identities: dict[int, LabelSet] = {}
        self._identities_version = 0  # bumped on every change of ``identities``
        self._entities_of = -1  # the version ``entities`` were worked out for
        self._policies: dict[str, tuple[int, Origin]] = {}  # store key -> (mod revision, origin)
        self._contextual: set[str] = set()  # store keys of policies that name CIDR groups or Services
        self._ids_seen: dict[str, int] = {}  # identity key -> mod revision
        self._resolved: dict[int, tuple[int, ResolvedPolicy]] = {}  # ep id -> (identity, policy)
        self._eps = PolicyEndpoints(net)  # which endpoints a run looks at (the changed ones: issue 16)
        self._l7: set[int] = set()  # endpoints whose resolved policy redirects to a proxy
        self._last_mode = ""
        self._map_synced = False  # the first sync writes the whole map
        self._published_cidrs: dict[str, int] = {}  # the CIDR prefixes the ipcache is asked to hold
        self._ipcache_behind = False  # a publish failed: retry it even if nothing changed
        self._behind: set[int] = set()  # endpoints whose rows or flags a failed run left behind
        self.last_sync_seconds = 0.0
        self.entities: dict[str, frozenset[int]] = {}  # entity name -> identities, as of the last sync
        self.generation = 0  # bumped whenever a sync changed what the rules resolve to (caches key on it)
        # toFQDNs: what the DNS proxy let through, and the identities of the IPs selectors select
        self.dns_cache = DNSCache()
        self.fqdn = FQDNIdentities()
        self._lock = threading.RLock()  # sync() and the DNS proxy's learn_dns() take turns
        self.table: Table[PolicySlot, Verdict] = Table("policy-slots", initialized=False)
        self.table.add_index("endpoint", lambda slot, _v: (slot.ep_id,))
        extra = {} if clock is None else {"clock": clock}
        ops = PolicyOps(lambda: self.net.datapath.policy if self.net.datapath is not None else None, self.table.items)
        self.reconciler: Reconciler[PolicySlot, Verdict] = Reconciler(
            self.table, ops, name="bpf-policy", prune_interval=PolicyMap.RESYNC_SECONDS, **extra)
        for n, labels in reserved_identities().items():
            self._set_identity(n, labels, set())

    # ---- inputs -----------------------------------------------------------------------------------
    def _set_identity(self, n: int, labels: LabelSet, dirty: set[int]) -> None:
        self.identities[n] = labels
        self._identities_version += 1
        dirty |= self.repo.upsert_identity(n, label_map(labels))
        dirty.add(n)

    def _drop_identity(self, n: int, dirty: set[int]) -> None:
        self.identities.pop(n, None)
        self._identities_version += 1
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
        context = self.context()
        if context != self._context:  # a CIDR group or Service changed: the policies naming any, again
            self._context = context
            self._policies = {k: (-1 if k in self._contextual else rev, origin)
                              for k, (rev, origin) in self._policies.items()}
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
                    rules = rules_from_object(obj, context)
                except (ValueError, KeyError, ValidationError) as exc:
                    log.warning("policy %s not applied: %s", kv.key, exc)
                    if self.on_import is not None and isinstance(obj, dict):
                        self.on_import(obj, f"policy not imported: {exc}")
                    continue
                if self.on_import is not None:
                    skipped = sorted({u for r in rules for u in r.unsupported} | ({"L7 rules"} if any(
                        r.has_l7 and (self.proxy_ports is None or any(p.kind not in ("http", "dns", "kafka") for p in r.l7))
                        for r in rules) else set()))
                    if skipped:
                        self.on_import(obj, f"imported, but not enforced here: {', '.join(skipped)}")
                dirty |= self.repo.set_policy(origin, rules)
                self._policies[kv.key] = (kv.mod_revision, origin)
                if uses_context(obj):
                    self._contextual.add(kv.key)
                else:
                    self._contextual.discard(kv.key)
                changed = True
        for key in [k for k in self._policies if k not in seen]:
            dirty |= self.repo.delete_policy(self._policies.pop(key)[1])
            self._contextual.discard(key)
            changed = True
        return changed

    def _fold_cidrs(self, dirty: set[int]) -> None:
        """Every prefix a rule names gets a node-local CIDR identity (labels cidr:<p>, reserved:world); with
        policyCIDRMatchMode=[nodes] so does every remote node IP a prefix covers, labelled as that node
        (membrane.policy.nodecidr), and the host identity gets its node IP's cidr label."""
        prefixes = self.repo.prefixes()
        addrs = self.node_addresses() if self.cidr_match_nodes() else {}
        nodes = {host_prefix(ip): ip for ip in covered_remote_nodes(addrs, prefixes)}
        want = {str(p) for p in prefixes} | set(nodes)
        have = self.cidrs.prefixes()
        for prefix in want - set(have):
            self.cidrs.cidr_identity(prefix)
        for prefix in set(have) - want:
            n = have[prefix]
            self.cidrs.release(prefix)
            if self.cidrs.labels(n) is None:
                self._drop_identity(n, dirty)
        now = self.cidrs.prefixes()
        for prefix, n in now.items():  # a /32 may change between a CIDR's and a node's labels
            labels = remote_node_labels(nodes[prefix]) if prefix in nodes else self.cidrs.labels(n)
            if labels is not None and self.identities.get(n) != labels:
                self._set_identity(n, labels, dirty)
        self._node_cidrs = {ip: now[prefix] for prefix, ip in nodes.items()}
        own = next((ip for ip, is_own in addrs.items() if is_own and covered(ip, prefixes)), None)
        host = host_labels_with_cidr(reserved_labels(HOST_IDENTITY), own)
        if self.identities.get(HOST_IDENTITY) != host:
            self._set_identity(HOST_IDENTITY, host, dirty)

    def node_cidr_identities(self) -> dict[str, int]:
        """policyCIDRMatchMode=[nodes]: remote node IP -> the identity the ipcache must give it."""
        return dict(self._node_cidrs)

    def cidr_prefixes(self) -> dict[str, int]:
        """prefix -> CIDR identity the BPF ipcache must hold now (the ipcache controller reads it too)."""
        return self._published_cidrs

    def _publish_cidrs(self, *, release: bool) -> None:
        """Bring the ipcache's CIDR entries to the allocator's: additions only, or (``release``) exactly."""
        current = self._local_prefixes()
        want = current if release else {**self._published_cidrs, **current}
        if want == self._published_cidrs and not self._ipcache_behind:
            return
        self._published_cidrs = want
        self._ipcache_behind = True
        self.publish_ipcache()
        self._ipcache_behind = False

    # ---- the controller run -------------------------------------------------------------------------
    def sync(self) -> None:
        with self._lock:
            try:
                self._sync()
            except BaseException:
                self._eps.everything()  # the endpoints this run took from the change log, looked at again
                raise

    def _sync(self) -> None:
        start = time.monotonic()
        dirty: set[int] = set()
        self._fold_identities(dirty)
        self._fold_policies(dirty)
        self._fold_cidrs(dirty)
        self._fold_fqdns(dirty)
        dirty |= self.repo.set_peer_named_ports(self.peer_ports())
        mode = self.mode()
        full = mode != self._last_mode
        self._last_mode = mode
        if self.net.datapath is None:
            return
        fresh = set(self._local_prefixes().values()) - set(self._published_cidrs.values())
        if self._entities_of != self._identities_version:
            # each entity's identities: a pass over every identity per entity, so only when they changed
            # (it was half of this controller's CPU in a pod burst, which changes no identity: issue 16)
            self.entities = {name: entity_identities(name, self.identities, self.cluster) for name in ENTITIES}
            self._entities_of = self._identities_version
        entities = self.entities
        # the endpoints that changed, those of identities whose policy may have, those left behind
        endpoints, looked = self._eps.select(dirty, self._behind, everything=full or not self._map_synced)
        changed: set[int] = set(self._behind)
        for ep_id in [i for i in looked if i in self._resolved and i not in endpoints and i != HOST_ENDPOINT_ID]:
            del self._resolved[ep_id]
            self._eps.forget(ep_id)
            self._l7.discard(ep_id)
            changed.add(ep_id)
        recomputed = 0
        for ep in endpoints.values():
            cached = self._resolved.get(ep.id)
            if cached is not None and cached[0] == ep.identity and ep.identity not in dirty and not full:
                continue
            resolved = self.repo.resolve(ep.identity, entities=entities, mode=mode, named_ports=self._named_ports(ep))
            self._resolved[ep.id] = (ep.identity, resolved)
            self._eps.resolved(ep)
            if resolved.l7:
                self._l7.add(ep.id)
            else:
                self._l7.discard(ep.id)
            recomputed += 1
            changed.add(ep.id)
        if self._resolve_host(dirty, entities, mode, full):
            recomputed += 1
            changed.add(HOST_ENDPOINT_ID)
        scope = None if full or not self._map_synced else changed
        self._behind |= changed if scope is not None else set(endpoints) | changed
        if fresh and self._map_synced and not full:
            self._prime(fresh, changed)
        self._publish_cidrs(release=False)  # identities before the rules that use them
        if changed or full or not self._map_synced:
            # A full pass (first sync, enforcement mode change) rewrites every endpoint's rows; otherwise
            # only the changed endpoints' slots are computed and replaced in the table: one policy change
            # on a node with 30 000 slots costs its own entries, not a rebuild of all of them.
            self._apply(endpoints, scope)
            self._map_synced = True
        self._publish_cidrs(release=True)  # released prefixes leave once no rule uses their numbers
        if not changed and not full:
            return
        self.generation += 1
        self.last_sync_seconds = time.monotonic() - start
        self.net.stats.observe("policyCalculation", self.last_sync_seconds)
        log.info("policy: %d endpoint(s) recomputed, %d rules, in %.1f ms", recomputed, self.repo.rule_count(),
                 self.last_sync_seconds * 1e3)

    def _write(self, slots: dict[PolicySlot, Verdict], scope: set[int] | None, *, remove: bool = True) -> None:
        """Make the table's rows of the endpoints in ``scope`` (None: all) exactly ``slots``: additions and
        changes first, each time with a reconciler step, and removals only once those are all in the map
        (a connection that stays allowed is never refused in between). Raises NotApplied if any row is not
        in the map; rows that should go then stay desired until the next run."""
        if scope is None:
            old = self.table.keys()
        else:
            old = {slot for ep_id in scope for slot, _v in self.table.by_index("endpoint", ep_id)}
        self.table.upsert_many(slots)
        self.table.mark_initialized()
        self._step(slots)
        if remove:
            gone = old - slots.keys()
            self.table.delete_many(gone)
            self._step(gone)

    def _step(self, slots: Iterable[PolicySlot]) -> None:
        self.reconciler.run_once()
        behind = self.reconciler.not_done(slots)
        if behind:
            raise NotApplied(f"policy map: {len(behind)} slot(s) not applied: "
                             f"{next(iter(behind.values())).message or 'pending'}")

    def _prime(self, fresh: set[int], changed: set[int]) -> None:
        """Add the slots of the ``fresh`` CIDR identities to the map, the rest of it left as it was."""
        rules = [r for ep_id in changed if (now := self._resolved.get(ep_id)) is not None
                 for r in map_rules(ep_id, now[1], self._proxy_ports(ep_id, now[1])) if r.identity in fresh]
        if rules:
            self._write(desired_slots(rules), {r.ep_id for r in rules}, remove=False)

    def _resolve_host(self, dirty: set[int], entities: dict[str, Any], mode: str, full: bool) -> bool:
        """Re-resolve the host endpoint when its policy may have changed; True if it was."""
        hf = self.host_firewall
        stale = HOST_IDENTITY in dirty or full or HOST_ENDPOINT_ID not in self._resolved
        resolved = hf.resolve(self.repo, entities, mode, stale=stale) if hf is not None else None
        if resolved is None:
            return False
        self._resolved[HOST_ENDPOINT_ID] = (HOST_IDENTITY, resolved)
        return True

    def host_resolved(self) -> ResolvedPolicy | None:
        found = self._resolved.get(HOST_ENDPOINT_ID)
        return found[1] if found is not None else None

    def _enforce_host(self, *, gaining: bool) -> None:
        if self.host_firewall is not None:
            self.host_firewall.enforce_policy(self.host_resolved(), gaining=gaining)

    def _apply(self, endpoints: dict[int, Endpoint], scope: set[int] | None) -> None:
        """Enforcement flags and map slots of the endpoints in ``scope`` (None: all, and the whole map)."""
        touched = endpoints if scope is None else {i: endpoints[i] for i in scope if i in endpoints}
        # the flags of the touched endpoints only (all of them was O(n) per run: issue 16)
        want_flags = {ep_id: (found[1].ingress_enforced, found[1].egress_enforced) for ep_id in touched
                      if (found := self._resolved.get(ep_id)) is not None}
        # 1. endpoints losing enforcement stop enforcing before their entries go
        for ep_id, ep in touched.items():
            ing, egr = want_flags.get(ep_id, (False, False))
            self.net.set_policy_enforcement(ep.container_id, ep.ifname, ep.policy_ingress and ing,
                                            ep.policy_egress and egr)
        if scope is None or HOST_ENDPOINT_ID in scope:
            self._enforce_host(gaining=False)
        # 2. the map holds exactly the resolved entries of the endpoints we have (of those in scope)
        resolved = self._resolved if scope is None else {i: self._resolved[i] for i in scope if i in self._resolved}
        rules = [rule for ep_id, (_i, r) in resolved.items() for rule in map_rules(ep_id, r, self._proxy_ports(ep_id, r))]
        failed: NotApplied | None = None
        try:
            self._write(desired_slots(rules), scope)
        except NotApplied as exc:
            failed = exc
        # 3. endpoints gaining enforcement start enforcing once their allows are in place
        for ep_id, ep in touched.items():
            if failed is not None and self.reconciler.not_done(
                    [slot for slot, _v in self.table.by_index("endpoint", ep_id)]):
                continue  # keeps the flags of step 1 until its rows are in
            ing, egr = want_flags.get(ep_id, (False, False))
            self.net.set_policy_enforcement(ep.container_id, ep.ifname, ing, egr)
            if ep_id in self._resolved:  # its first packet may go now: an ADD waiting for this returns
                self.net.policy_realized(ep.container_id, ep.ifname, self._resolved[ep_id][0])
        if (scope is None or HOST_ENDPOINT_ID in scope) and not (failed is not None and self.reconciler.not_done(
                [slot for slot, _v in self.table.by_index("endpoint", HOST_ENDPOINT_ID)])):
            self._enforce_host(gaining=True)
        if failed is not None:
            raise failed
        self._behind.clear()

    def _proxy_ports(self, ep_id: int, resolved: ResolvedPolicy) -> Mapping[tuple[str, int, int], int] | None:
        if self.proxy_ports is None or not resolved.l7:
            return None
        return self.proxy_ports(ep_id, resolved)

    def _named_ports(self, ep: Endpoint) -> NamedPorts:
        return pod_named_ports(self.pod_of(ep.namespace, ep.pod_name) or {})

    # ---- for the policy names in flows (agent/policy_names.py) ----------------------------------------
    def endpoint_identity(self, ep_id: int) -> int | None:
        got = self._resolved.get(ep_id)
        return got[0] if got is not None else None

    def endpoint_named_ports(self, ep_id: int) -> NamedPorts:
        ep = next((e for e in self.net.endpoints.list() if e.id == ep_id), None)  # not per event: flow names
        return self._named_ports(ep) if ep is not None else {}

    def policy_revisions(self) -> dict[Origin, int]:
        """Each imported policy's store revision."""
        return {origin: rev for rev, origin in list(self._policies.values())}

    def l7_endpoints(self) -> list[int]:
        """The endpoints whose policy redirects something to a proxy."""
        host = self._resolved.get(HOST_ENDPOINT_ID)
        return sorted(self._l7 | ({HOST_ENDPOINT_ID} if host is not None and host[1].l7 else set()))

    def resolved(self) -> list[dict[str, Any]]:
        out = []
        for ep_id, (identity, r) in sorted(self._resolved.items()):
            out.append({"endpoint": ep_id, "identity": identity, "ingress_enforced": r.ingress_enforced,
                        "egress_enforced": r.egress_enforced, "entries": len(r.entries)})
        return out
