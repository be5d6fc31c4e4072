"""The node's pod networking: IPAM, endpoints, veths, per-endpoint routes and the BPF endpoint map.

The endpoint map is written only by its reconciler (``reconciler``, ops in
membrane.datapath.maps.endpoint_ops): a change puts the endpoint's row into ``table`` and runs a
reconciler step in the caller's thread, and fails (rolling back) unless the row is in the map, so
the entry is there before the programs that check against it. Failed removals and drift are
repaired by the reconciler's own retries and periodic prune.

Every change is all-or-nothing: a failed endpoint creation rolls back the veth, route, map entry and
IP it made, so nothing leaks. State is persisted after each change so a restart restores it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

from membrane.agent.local_state import ChangedEndpoints, LocalState, StateChanges, load_state, save_state
from membrane.agent.socket_lb_sync import SocketLBSync
from membrane.agent.state_writer import StateWriter
from membrane.datapath.linux import links, pod_link, routes, sysctl
from membrane.datapath.loader import NodeDatapath
from membrane.datapath.maps.endpoint_ops import EndpointsOps
from membrane.datapath.maps.endpoints import POLICY_EGRESS_ENFORCED, POLICY_INGRESS_ENFORCED, EndpointRecord
from membrane.endpoint.model import STATE_READY, STATE_WAITING_FOR_IDENTITY, Endpoint, EndpointTable
from membrane.endpoint.routing import endpoint_route
from membrane.endpoint.start_stats import StageTimes
from membrane.ipam.host_scope import HostScopeAllocator
from membrane.model.naming import host_veth_name
from membrane.state.reconciler import Reconciler
from membrane.state.table import Table

log = logging.getLogger(__name__)

HOST_DEVICE = "membrane_host"
PRUNE_SECONDS = 60.0


class EndpointNotApplied(RuntimeError):
    """An endpoint's map entry could not be written (its reconciler retries it)."""


class NodeNetwork:
    def __init__(self, state_path: str, pin_dir: str) -> None:
        self.state_path = state_path
        self.pin_dir = pin_dir
        self.lock = threading.RLock()
        self.endpoints = EndpointTable()
        self.allocator: HostScopeAllocator | None = None
        self.datapath: NodeDatapath | None = None
        self.socket_lb = SocketLBSync(pin_dir)  # socket LB (bpf/sock.c): .enabled set before start()
        self.pod_cidr = ""
        self.router_ip = ""
        self.pod_mtu = 1500  # lowered by the tunnel overhead in tunnel mode (set before start)
        self.on_change: Callable[[], None] = lambda: None  # endpoints added or removed
        self.stats = StageTimes()  # where pod starts spend their time, by stage
        self._added_at: dict[tuple[str, str], float] = {}  # endpoint key -> when ADD made it (monotonic)
        self._pending: dict[tuple[str, str], threading.Event] = {}  # ADDs plumbing outside the lock
        self._pending_ids: set[int] = set()  # their endpoint IDs
        self._regenerated: dict[tuple[str, str], threading.Event] = {}  # set once the policy is in place
        self.table: Table[str, EndpointRecord] = Table("endpoints", initialized=False)
        self.reconciler: Reconciler[str, EndpointRecord] = Reconciler(
            self.table, EndpointsOps(lambda: self.datapath.endpoints if self.datapath is not None else None,
                                     self.table.items), name="bpf-endpoints", prune_interval=PRUNE_SECONDS)
        self._map_lock = threading.Lock()  # parallel ADDs write the endpoints table one at a time
        # The state files, written off the node lock (save_state looked up at each write, for tests). A
        # change only marks its endpoint; the writer takes the marked ones (under the node lock) once per
        # write and writes their files only: O(changed) per write, whatever the node's endpoint count.
        self._changed = ChangedEndpoints()
        self._node_part: dict[str, Any] | None = None  # the node's part of the state, when it must be written
        self._writer: StateWriter[None] = StateWriter(lambda _none: self._write_state())

    # ---- start-up -------------------------------------------------------------------------------
    def start(self, pod_cidr: str) -> None:
        """Prepare the node for pods: sysctls, router IP device, BPF programs; restore endpoints."""
        with self.lock:
            saved = load_state(self.state_path)
            for item in saved.endpoints:  # each file is rewritten, or removed if its endpoint is not kept
                self._changed.changed((item.get("container_id", ""), item.get("ifname", "")))
            if saved.pod_cidr and saved.pod_cidr != pod_cidr:
                log.warning("pod CIDR changed from %s to %s: discarding old local state", saved.pod_cidr, pod_cidr)
                saved = LocalState()
            # The IP allocations are the router's and the restored endpoints' (_restore_endpoints).
            self.allocator = HostScopeAllocator(pod_cidr)
            self.router_ip = self.allocator.reserve_router()
            self.pod_cidr = pod_cidr
            self._node_part = {"pod_cidr": pod_cidr, "router_ip": self.router_ip}
            sysctl.set_sysctl("net.ipv4.ip_forward", "1")
            sysctl.set_sysctl("net.ipv4.conf.all.rp_filter", "0")
            sysctl.set_sysctl("net.ipv4.conf.default.rp_filter", "0")
            links.ensure_dummy(HOST_DEVICE, f"{self.router_ip}/32")
            os.makedirs(self.pin_dir, exist_ok=True)
            self.datapath = NodeDatapath(self.pin_dir)
            self.datapath.load()
            self._restore_endpoints(saved.endpoints)
            self.socket_lb.start(self.endpoints.list())  # socket LB
            self._changed.changed()  # every endpoint
            written = self._persist()
        self._writer.wait(written)  # outside the lock: the writer takes its snapshot under it

    def _restore_endpoints(self, items: list[dict[str, Any]]) -> None:
        """Re-adopt endpoints whose veth still exists; programs are replaced in place (no traffic gap)."""
        assert self.datapath is not None and self.allocator is not None
        restored = EndpointTable.restore(items)
        keep: list[Endpoint] = []
        for ep in restored.list():
            ifindex = links.link_index(ep.host_ifname)
            if ifindex is None:
                log.info("endpoint %d (%s): veth %s is gone, releasing %s", ep.id, ep.pod_key, ep.host_ifname, ep.ipv4)
                continue
            self.allocator.allocate_specific(ep.ipv4, ep.pod_key)
            ep.host_ifindex = ifindex
            keep.append(ep)
        valid_ips = set()
        # Entries before programs: from_container drops what comes from a device it cannot bind.
        # The first reconciler step also prunes: entries of endpoints not kept and stale bindings go.
        for ep in keep:
            self.endpoints.put(ep)
            self.table.upsert(ep.ipv4, self._record(ep))
            routes.replace_route(endpoint_route(ep.ipv4, ep.host_ifname))
            valid_ips.add(ep.ipv4)
        self.table.mark_initialized()
        self._apply(valid_ips)
        self.datapath.reattach_all([ep.host_ifindex for ep in keep])
        # An allocation without an endpoint (a crash between allocate and persist) was never restored.

    # ---- endpoints --------------------------------------------------------------------------------
    def add_endpoint(self, container_id: str, ifname: str, netns: str, namespace: str, pod: str,
                     labels: dict[str, str]) -> Endpoint:
        """Create the endpoint, or return the one that exists. The node lock covers only the bookkeeping
        (IP, endpoint ID, table, state file); the kernel work runs outside it, so concurrent ADDs of
        different pods overlap, while a second ADD of the same pod waits for the first."""
        key = (container_id, ifname)
        t0 = time.monotonic()
        while True:
            with self.lock:
                existing = self.endpoints.get(container_id, ifname)
                if existing is not None:
                    return existing
                busy = self._pending.get(key)
                if busy is None:
                    self.stats.observe("waitingForLock", time.monotonic() - t0)
                    assert self.allocator is not None and self.datapath is not None
                    with self.stats.stage("ipam"):
                        ip = self.allocator.allocate(f"{namespace}/{pod}")  # RangeFull propagates; nothing made yet
                    ep_id = self.endpoints.next_id(exclude=self._pending_ids)
                    self._pending[key] = threading.Event()
                    self._pending_ids.add(ep_id)
                    break
            busy.wait()
        try:
            ep = self._plumb(container_id, ifname, netns, namespace, pod, labels, ip, ep_id)
            try:
                with self.lock:
                    self.endpoints.put(ep)
                    written = self._persist(key)
                    self._added_at[key] = time.monotonic()
                # Identity and policy start now, while the state file is written, not after it: the
                # ADD still answers only once the file is on disk and the policy is in place.
                self.on_change()
                with self.stats.stage("persist"):  # on disk before the ADD answers
                    self._writer.wait(written)
            except BaseException:
                with self.lock:
                    self.endpoints.remove(container_id, ifname)
                    self._persist(key)  # whatever the file holds by now, it must not keep this one
                    self._added_at.pop(key, None)
                    # its policy may already be realized: a retried ADD must wait for its own
                    self._regenerated.pop(key, None)
                self._unplumb(ep.ipv4, ep.host_ifname, route=True, entry=True, link=True)
                self.on_change()  # the identity reference and policy rows it may have got go too
                raise
        except BaseException:
            with self.lock:
                self.allocator.release(ip)
                self._persist()
            raise
        finally:
            with self.lock:
                self._pending_ids.discard(ep_id)
                self._pending.pop(key).set()
        return ep

    def _plumb(self, container_id: str, ifname: str, netns: str, namespace: str, pod: str,
               labels: dict[str, str], ip: str, ep_id: int) -> Endpoint:
        """The kernel side of an ADD (veth, addresses, endpoint map entry, programs, route), undone in
        reverse on any failure, so nothing is left behind."""
        assert self.datapath is not None
        host_if = host_veth_name(container_id, ifname)
        made_link = made_route = made_map = False
        try:
            with self.stats.stage("veth"):
                veth = pod_link.create_pod_interface(host_if, netns, ifname, ip, self.router_ip, mtu=self.pod_mtu)
                made_link = True
                sysctl.set_sysctl(f"net.ipv4.conf.{host_if}.rp_filter", "0")
            ep = Endpoint(
                id=ep_id, container_id=container_id, ifname=ifname, netns=netns,
                namespace=namespace, pod_name=pod, ipv4=ip, host_ifname=host_if,
                host_ifindex=veth.host_ifindex, host_mac=veth.host_mac, pod_mac=veth.pod_mac,
                labels=dict(labels), state=STATE_WAITING_FOR_IDENTITY,
            )
            # The entry (and its device binding) before the programs that check against it.
            with self.stats.stage("endpointMap"):
                made_map = True
                self._write(ep)
            with self.stats.stage("bpfAttach"):
                self.datapath.attach_endpoint(veth.host_ifindex)
                self.socket_lb.add(netns, ip)  # socket LB
            with self.stats.stage("route"):
                routes.replace_route(endpoint_route(ip, host_if), ifindex=veth.host_ifindex)
                made_route = True
            return ep
        except BaseException:
            self._unplumb(ip, host_if, route=made_route, entry=made_map, link=made_link)
            raise

    def _unplumb(self, ip: str, host_if: str, route: bool, entry: bool, link: bool) -> None:
        assert self.datapath is not None
        if route:
            routes.delete_route(endpoint_route(ip, host_if))
        if entry:
            self._unwrite(ip)
            self.socket_lb.remove(ip)  # socket LB
        if link:
            links.delete_link(host_if)

    def remove_endpoint(self, container_id: str, ifname: str) -> Endpoint | None:
        """Idempotent: removing an unknown endpoint is fine (CNI DEL may be repeated). Waits for an
        ADD of the same endpoint that is still plumbing."""
        while (busy := self._pending.get((container_id, ifname))) is not None:
            busy.wait()
        with self.lock:
            ep = self.endpoints.remove(container_id, ifname)
            self._added_at.pop((container_id, ifname), None)
            self._regenerated.pop((container_id, ifname), None)
            if ep is None:
                # The veth may exist without a record (a crash mid-ADD): remove it anyway.
                links.delete_link(host_veth_name(container_id, ifname))
                return None
            assert self.allocator is not None and self.datapath is not None
            routes.delete_route(endpoint_route(ep.ipv4, ep.host_ifname))
            self._unwrite(ep.ipv4)
            self.socket_lb.remove(ep.ipv4)  # socket LB
            links.delete_link(ep.host_ifname)
            self.allocator.release(ep.ipv4)
            written = self._persist(ep.key)
        self._writer.wait(written)  # outside the lock: the writer takes its snapshot under it
        self.on_change()
        return ep

    def check_endpoint(self, container_id: str, ifname: str) -> list[str]:
        """Problems with an endpoint (empty list: all is as it should be)."""
        with self.lock:
            ep = self.endpoints.get(container_id, ifname)
            if ep is None:
                return [f"no endpoint for container {container_id} interface {ifname}"]
            assert self.datapath is not None
            problems = []
            if links.link_index(ep.host_ifname) is None:
                problems.append(f"host veth {ep.host_ifname} is missing")
            rec = self.datapath.endpoints.get(ep.ipv4)
            if rec is None:
                problems.append(f"endpoint map has no entry for {ep.ipv4}")
            elif rec.ifindex != ep.host_ifindex:
                problems.append(f"endpoint map entry for {ep.ipv4} points at ifindex {rec.ifindex}")
            if not routes.route_exists(endpoint_route(ep.ipv4, ep.host_ifname)):
                problems.append(f"route {ep.ipv4}/32 dev {ep.host_ifname} is missing")
            return problems

    def update_labels(self, pod_key: str, labels: dict[str, str]) -> None:
        with self.lock:
            changed = False
            for ep in self.endpoints.list():
                if ep.pod_key == pod_key and ep.labels != labels:
                    ep.labels = dict(labels)
                    self._changed.changed(ep.key)
                    changed = True
            if changed:
                self._persist()

    def update_all_labels(self, labels_of: Callable[[str, str], dict[str, str]],
                          pods: Collection[tuple[str, str]] | None = None) -> None:
        """The pod labels of every endpoint (of the endpoints of ``pods``, ``(namespace, name)``, if
        given) from ``labels_of(namespace, pod)``, in one pass (the per-pod ``update_labels`` for each
        endpoint scanned the table each time: O(n²) per pod event)."""
        with self.lock:
            changed = False
            for ep in self.endpoints.list():
                if pods is not None and (ep.namespace, ep.pod_name) not in pods:
                    continue
                labels = labels_of(ep.namespace, ep.pod_name)
                if ep.labels != labels:
                    ep.labels = dict(labels)
                    self._changed.changed(ep.key)
                    changed = True
            if changed:
                self._persist()

    def metrics(self) -> dict[str, dict[str, int]]:
        """Datapath counters as ``{"<reason>/<direction>": {"packets", "bytes"}}`` (0 = forwarded)."""
        if self.datapath is None:
            return {}
        out = {}
        for key, counters in self.datapath.metrics().items():
            direction = {1: "ingress", 2: "egress"}.get(key.direction, str(key.direction))
            out[f"{key.reason}/{direction}"] = {"packets": counters.packets, "bytes": counters.bytes}
        return out

    def set_identity(self, container_id: str, ifname: str, identity: int) -> None:
        """The endpoint's security identity, in the table, on disk and in its BPF map entry."""
        with self.lock:
            ep = self.endpoints.get(container_id, ifname)
            if ep is None or (ep.identity == identity and ep.state == STATE_READY):
                return
            assert self.datapath is not None
            if ep.identity != identity:
                self.endpoints.touch(ep.key)  # the policy controller looks at the changed endpoints only
            ep.identity = identity
            if ep.state != STATE_READY and (added := self._added_at.pop(ep.key, None)) is not None:
                self.stats.observe("waitingForIdentity", time.monotonic() - added)
            ep.state = STATE_READY
            self._write(ep)
            self._persist(ep.key)

    def policy_realized(self, container_id: str, ifname: str, identity: int) -> None:
        """The policy of ``identity`` is in the map and the endpoint's enforcement flags follow it: if
        that is still the endpoint's identity, its first regeneration is done (a waiting ADD returns)."""
        with self.lock:
            ep = self.endpoints.get(container_id, ifname)
            if ep is None or not identity or ep.identity != identity:
                return
            event = self._regenerated.setdefault(ep.key, threading.Event())
        event.set()

    def wait_regenerated(self, container_id: str, ifname: str, timeout: float) -> bool:
        """Wait until the endpoint has its identity and its policy is in place (Cilium's "endpoint
        regeneration before ready"); False after ``timeout`` seconds."""
        with self.lock:
            event = self._regenerated.setdefault((container_id, ifname), threading.Event())
        if not event.wait(timeout):
            return False
        self._writer.wait(self._writer.requested)  # its identity and policy flags on disk too
        return True

    def set_policy_enforcement(self, container_id: str, ifname: str, ingress: bool, egress: bool) -> None:
        """Switch policy enforcement of an endpoint per direction (the flags of its BPF map entry)."""
        with self.lock:
            ep = self.endpoints.get(container_id, ifname)
            if ep is None or (ep.policy_ingress, ep.policy_egress) == (ingress, egress):
                return
            assert self.datapath is not None
            ep.policy_ingress, ep.policy_egress = ingress, egress
            self._write(ep)
            self._persist(ep.key)

    def _write(self, ep: Endpoint) -> None:
        """The endpoint's row into the table and, through the reconciler, into the map."""
        with self._map_lock:
            self.table.upsert(ep.ipv4, self._record(ep))
            self._apply({ep.ipv4})

    def _unwrite(self, ip: str) -> None:
        """The row out; a failed delete stays queued in the reconciler, which retries it."""
        with self._map_lock:
            self.table.delete(ip)
            self.reconciler.run_once()

    def _apply(self, ips: set[str]) -> None:
        self.reconciler.run_once()
        behind = self.reconciler.not_done(ips)
        if behind:
            raise EndpointNotApplied(f"endpoint map: {len(behind)} entr(y/ies) not applied: "
                                     f"{next(iter(behind.values())).message or 'pending'}")

    def _record(self, ep: Endpoint) -> EndpointRecord:
        flags = (POLICY_INGRESS_ENFORCED if ep.policy_ingress else 0) | (POLICY_EGRESS_ENFORCED if ep.policy_egress else 0)
        return EndpointRecord(ifindex=ep.host_ifindex, ep_id=ep.id, pod_mac=ep.pod_mac, lxc_mac=ep.host_mac,
                              sec_identity=ep.identity, flags=flags)

    def _persist(self, key: tuple[str, str] | None = None) -> int:
        """Ask the state writer for a write (under the node lock; ``key``: the endpoint that changed, if
        one did; IP allocations follow the endpoints); ``wait`` on the number returned, outside the node
        lock, for this change to be on disk."""
        if key is not None:
            self._changed.changed(key)
        return self._writer.submit(None)

    def _write_state(self) -> None:
        """The writer thread: the endpoints changed since the last write, taken under the node lock
        after the change of every request it answers (each asked under that lock), then encoded and
        written outside it. What a failed write held is written again by the next one."""
        with self.lock:
            changes = StateChanges(self._node_part, self._changed.take(self.endpoints))
            self._node_part = None
        try:
            save_state(self.state_path, changes)
        except BaseException:
            with self.lock:
                self._changed.again(set(changes.endpoints))
                if self._node_part is None:
                    self._node_part = changes.node
            raise

    def close(self) -> None:
        self._writer.close()
        if self.datapath is not None:
            self.datapath.close()
