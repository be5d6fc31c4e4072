"""The agent's flow pipeline: BPF ring-buffer events → Hubble flows → the node's flow ring and metrics.

Events come from the datapath monitor (epoll on the ring buffer, no busy polling) in batches. Each one
becomes a flow-ring entry with both ends resolved: pods through the pod mirror (namespace, name,
labels, workload), everything else through the ipcache identity (host, world, remote-node …); most
are kept compact until read (membrane.agent.flow_batch).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from membrane.agent.flow_batch import BatchDecoder, CountKeyed
from membrane.agent.ifnames import interface_name
from membrane.datapath.maps import events as dpev
from membrane.datapath.monitor import EventMonitor
from membrane.hubble.events import DatapathEvent as FlowEvent
from membrane.hubble.events import EndpointInfo, PolicyAttributor, ServiceLookup, flow_from_event
from membrane.hubble.ring import FlowRing
from membrane.model import datapath_codes as codes
from membrane.store.mirror import Mirror
from membrane.store.watch import WatchEvent

log = logging.getLogger(__name__)

_KINDS = {codes.EVENT_TRACE: "trace", codes.EVENT_DROP: "drop", codes.EVENT_POLICY_VERDICT: "policy-verdict"}
_ACTIONS = {codes.POLICY_ACTION_ALLOW: "allow", codes.POLICY_ACTION_DENY: "deny"}


def to_flow_event(ev: dpev.DatapathEvent, node: str) -> FlowEvent | None:
    kind = _KINDS.get(ev.type)
    if kind is None:
        return None
    return FlowEvent(
        kind=kind, packet=ev.packet, timestamp_ns=ev.timestamp_ns, node_name=node,
        observation_point=ev.subtype if kind == "trace" else 0, trace_reason=ev.trace_reason,
        drop_reason=ev.drop_reason, src_identity=ev.src_identity, dst_identity=ev.dst_identity,
        endpoint_id=ev.ep_id, ifindex=ev.ifindex, ifname=interface_name(ev.ifindex),
        ingress=(ev.direction == dpev.DIRECTION_INGRESS) if ev.direction else None,
        action=_ACTIONS.get(ev.action, "allow"), policy_match_type=ev.match_type,
    )


def workloads_of(pod: dict[str, Any]) -> list[tuple[str, str]]:
    """The workload a pod belongs to, as Hubble names it (a Deployment's pod → the Deployment)."""
    meta = pod.get("metadata", {})
    for ref in meta.get("ownerReferences", []) or []:
        if ref.get("kind") == "Deployment":
            return [(ref["name"], "Deployment")]
        if ref.get("kind") == "ReplicaSet":
            name = ref["name"].rsplit("-", 1)[0]
            return [(name, "Deployment")]
    return []


class PodIndex:
    """IP → endpoint information, kept current by the pod mirror's events: a pod's change costs that pod
    (it used to decode every pod in the cluster at the first lookup after any pod changed, O(n) per pod
    during churn)."""

    def __init__(self, pods: Mirror, identity_of: Callable[[str], int], cluster: str) -> None:
        self._pods = pods
        self.pods = pods
        self._identity_of = identity_of
        self._cluster = cluster
        self._by_key: dict[str, str] = {}  # pod key -> its IP
        self._by_ip: dict[str, dict[str, dict[str, Any]]] = {}  # ip -> pod key -> pod (the last key wins)
        self._infos: dict[str, EndpointInfo] = {}  # ip -> what lookup last said (until that IP's pod changes)
        self._lock = threading.Lock()
        pods.subscribe(self._on_events)  # the current pods first, then every change
        # DNS names the DNS proxy learned for an IP (source_names/destination_names, observe --fqdn)
        self.names_of: Callable[[str], Iterable[str]] = lambda _ip: ()

    def _on_events(self, events: list[WatchEvent]) -> None:
        with self._lock:
            for ev in events:
                key = ev.kv.key
                old = self._by_key.pop(key, None)
                if old is not None:
                    held = self._by_ip[old]
                    del held[key]
                    if not held:
                        del self._by_ip[old]
                    self._infos.pop(old, None)
                if ev.type == "DELETE":
                    continue
                try:
                    pod = json.loads(ev.kv.value)
                    ip = pod.get("status", {}).get("podIP")
                except (ValueError, AttributeError):
                    log.warning("flows: ignoring pod %s: not a JSON object", key)
                    continue
                if ip:
                    self._by_key[key] = ip
                    self._by_ip.setdefault(ip, {})[key] = pod
                    self._infos.pop(ip, None)

    def lookup(self, ip: str) -> EndpointInfo | None:
        with self._lock:
            held = self._by_ip.get(ip)
            pod = held[max(held)] if held else None
            infos = self._infos
        identity = self._identity_of(ip)
        if pod is None:
            names = tuple(sorted(n.rstrip(".") for n in self.names_of(ip)))
            return EndpointInfo(identity=identity, names=names) if identity or names else None
        cached = infos.get(ip)
        if cached is not None and cached.identity == identity:
            return cached
        meta = pod["metadata"]
        labels = [f"k8s:{k}={v}" for k, v in sorted((meta.get("labels") or {}).items())]
        labels.append(f"k8s:io.kubernetes.pod.namespace={meta['namespace']}")
        info = EndpointInfo(identity=identity, namespace=meta["namespace"], pod_name=meta["name"],
                            labels=tuple(sorted(labels)), workloads=tuple(workloads_of(pod)),
                            cluster_name=self._cluster)
        with self._lock:
            held = self._by_ip.get(ip)
            if held and held[max(held)] is pod:  # not changed meanwhile: cache it
                infos[ip] = info
        return info


class FlowPipeline:
    """Records in batches (flow_batch.BatchDecoder) into ``ring``; ``on_flow`` sees the flows
    built at once, ``count_keyed`` (HubbleMetrics.process_keyed) counts the lazy ones (without
    it ``on_flow`` sees those too, built)."""

    def __init__(self, node: str, pin_dir: str, ring: FlowRing, lookup: Callable[[str], EndpointInfo | None],
                 on_flow: Callable[[Any], None] | None = None,
                 lookup_endpoint: Callable[[int], EndpointInfo | None] | None = None,
                 lookup_service: ServiceLookup | None = None,
                 attribute_policy: PolicyAttributor | None = None, count_keyed: CountKeyed | None = None) -> None:
        self.node = node
        self._attribute_policy = attribute_policy
        self._lookup_service = lookup_service
        self.ring = ring
        self._lookup = lookup
        self._lookup_endpoint = lookup_endpoint
        self._on_flow = on_flow
        self.monitor = EventMonitor(pin_dir, self._on_event, on_records=self._on_records)
        self.batch = BatchDecoder(node, self.monitor.offset_ns, to_flow_event, lookup, on_flow=on_flow,
                                  count_keyed=count_keyed, lookup_endpoint=lookup_endpoint,
                                  lookup_service=lookup_service, attribute_policy=attribute_policy)
        self._decode_errors = 0

    @property
    def decode_errors(self) -> int:
        """Events whose flow could not be built."""
        return self._decode_errors + self.batch.decode_errors

    def _on_records(self, records: list[bytes]) -> int:
        entries, bad = self.batch.decode(records)
        if entries:
            self.ring.extend(entries)
        return bad

    def start(self) -> None:
        self.monitor.start()

    def stop(self) -> None:
        self.monitor.stop()

    def _on_event(self, ev: dpev.DatapathEvent) -> None:
        fev = to_flow_event(ev, self.node)
        if fev is None:
            return
        try:
            flow = flow_from_event(fev, self._lookup, lookup_endpoint=self._lookup_endpoint,
                                   lookup_service=self._lookup_service, attribute_policy=self._attribute_policy)
        except Exception as exc:  # one bad record must not stop the monitor
            self._decode_errors += 1
            log.debug("event not decoded: %s", exc)
            return
        self.ring.append(flow)
        if self._on_flow is not None:
            self._on_flow(flow)
