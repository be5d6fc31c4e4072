"""Agent events (``GetAgentEvents``, ``hubble observe agent-events``): what the agent learned and did,
as Hubble's ``flow.AgentEvent`` notifications.

The agent turns changes of its view of the cluster into events: its start, a local endpoint created or
deleted, a network policy updated or deleted, a Service frontend upserted or deleted, an ipcache
entry upserted or deleted. The builders here are pure (plain resource dicts in, protobuf out); the
events are kept in a bounded :class:`~membrane.hubble.ring.FlowRing` of ``GetAgentEventsResponse``
(the ring only needs a ``time``), queried like flows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from membrane.hubble.proto.flow import flow_pb2
from membrane.hubble.proto.observer import observer_pb2

AGENT_EVENTS_CAPACITY = 1023
POLICY_NAME_LABEL = "io.cilium.k8s.policy.name"
POLICY_NAMESPACE_LABEL = "io.cilium.k8s.policy.namespace"
POLICY_DERIVED_FROM_LABEL = "io.cilium.k8s.policy.derived-from"


def response(event: flow_pb2.AgentEvent, node_name: str, time_ns: int) -> observer_pb2.GetAgentEventsResponse:
    resp = observer_pb2.GetAgentEventsResponse(agent_event=event, node_name=node_name)
    resp.time.FromNanoseconds(time_ns)
    return resp


def agent_started(time_ns: int) -> flow_pb2.AgentEvent:
    event = flow_pb2.AgentEvent(type=flow_pb2.AGENT_STARTED)
    event.agent_start.time.FromNanoseconds(time_ns)
    return event


def pod_labels(pod: Mapping[str, Any]) -> list[str]:
    """A pod's labels as Cilium endpoint labels (``k8s:key=value``, sorted, with the namespace)."""
    meta = pod.get("metadata") or {}
    labels = [f"k8s:{k}={v}" for k, v in (meta.get("labels") or {}).items()]
    labels.append(f"k8s:io.kubernetes.pod.namespace={meta.get('namespace', 'default')}")
    return sorted(labels)


def endpoint_event(pod: Mapping[str, Any], created: bool, endpoint_id: int = 0) -> flow_pb2.AgentEvent:
    """ENDPOINT_CREATED / ENDPOINT_DELETED for a local pod."""
    meta = pod.get("metadata") or {}
    event = flow_pb2.AgentEvent(type=flow_pb2.ENDPOINT_CREATED if created else flow_pb2.ENDPOINT_DELETED)
    update = event.endpoint_update
    update.id = endpoint_id
    update.labels.extend(pod_labels(pod))
    update.pod_name = str(meta.get("name", ""))
    update.namespace = str(meta.get("namespace", "default"))
    return event


def _rule_count(policy: Mapping[str, Any]) -> int:
    spec = policy.get("spec") or {}
    if "specs" in policy:  # CiliumNetworkPolicy with a list of rules
        return len(policy.get("specs") or [])
    return 1 if spec else 0


def policy_event(policy: Mapping[str, Any], deleted: bool, revision: int) -> flow_pb2.AgentEvent:
    """POLICY_UPDATED / POLICY_DELETED: the policy's labels (name, namespace, kind it derives from), the
    store revision of the change and its number of rules."""
    meta = policy.get("metadata") or {}
    kind = str(policy.get("kind", "NetworkPolicy"))
    event = flow_pb2.AgentEvent(type=flow_pb2.POLICY_DELETED if deleted else flow_pb2.POLICY_UPDATED)
    labels = [f"k8s:{POLICY_DERIVED_FROM_LABEL}={kind}", f"k8s:{POLICY_NAME_LABEL}={meta.get('name', '')}"]
    if meta.get("namespace"):
        labels.append(f"k8s:{POLICY_NAMESPACE_LABEL}={meta['namespace']}")
    event.policy_update.labels.extend(sorted(labels))
    event.policy_update.revision = revision
    event.policy_update.rule_count = 0 if deleted else _rule_count(policy)
    return event


def service_upsert(frontend_id: int, service: str, fe_type: str, ip: str, port: int,
                   backends: Sequence[tuple[str, int]], ext_policy: str = "Cluster",
                   int_policy: str = "Cluster") -> flow_pb2.AgentEvent:
    """SERVICE_UPSERTED for one frontend ``ip:port`` of ``service`` (``namespace/name``)."""
    namespace, _, name = service.partition("/")
    event = flow_pb2.AgentEvent(type=flow_pb2.SERVICE_UPSERTED)
    up = event.service_upsert
    up.id = frontend_id
    up.frontend_address.ip, up.frontend_address.port = ip, port
    for b_ip, b_port in backends:
        up.backend_addresses.add(ip=b_ip, port=b_port)
    up.type, up.name, up.namespace = fe_type, name, namespace
    up.ext_traffic_policy, up.int_traffic_policy = ext_policy, int_policy
    return event


def service_delete(frontend_id: int) -> flow_pb2.AgentEvent:
    event = flow_pb2.AgentEvent(type=flow_pb2.SERVICE_DELETED)
    event.service_delete.id = frontend_id
    return event


def ipcache_event(cidr: str, entry: Mapping[str, Any] | None, old: Mapping[str, Any] | None,
                  owner: Mapping[str, str] | None = None) -> flow_pb2.AgentEvent:
    """IPCACHE_UPSERTED (``entry`` given) or IPCACHE_DELETED (``entry`` None; ``old`` names what went).
    Entries are the stored ipcache values (``identity``, ``tunnelEndpoint``…); ``owner`` the pod's
    ``namespace`` / ``pod_name`` when the address is a pod's."""
    current = entry if entry is not None else (old or {})
    event = flow_pb2.AgentEvent(type=flow_pb2.IPCACHE_UPSERTED if entry is not None else flow_pb2.IPCACHE_DELETED)
    note = event.ipcache_update
    note.cidr = cidr
    note.identity = int(current.get("identity") or 0)
    note.host_ip = str(current.get("tunnelEndpoint") or "")
    note.encrypt_key = int(current.get("encryptKey") or 0)
    if entry is not None and old is not None:
        note.old_identity.value = int(old.get("identity") or 0)
        note.old_host_ip = str(old.get("tunnelEndpoint") or "")
    if owner:
        note.namespace = owner.get("namespace", "")
        note.pod_name = owner.get("pod_name", "")
    return event


def frontend_changes(old: Mapping[int, tuple[Any, ...]], new: Mapping[int, tuple[Any, ...]]
                     ) -> tuple[list[int], list[int]]:
    """Frontend IDs upserted (new or changed) and deleted between two ``{id: description}`` maps."""
    upserted = sorted(fid for fid, desc in new.items() if old.get(fid) != desc)
    deleted = sorted(fid for fid in old if fid not in new)
    return upserted, deleted


def describe(event: flow_pb2.AgentEvent) -> str:
    """``TYPE (field: value, …)`` of an agent event, as ``hubble observe agent-events`` prints one."""
    from google.protobuf import json_format

    name = flow_pb2.AgentEventType.Name(event.type)
    which = event.WhichOneof("notification")
    if which is None:
        return name
    fields = json_format.MessageToDict(getattr(event, which), preserving_proto_field_name=True)
    parts = []
    for key, value in fields.items():
        if isinstance(value, dict):
            value = ":".join(str(v) for v in value.values())
        elif isinstance(value, list):
            value = "[" + ", ".join(":".join(str(x) for x in v.values()) if isinstance(v, dict) else str(v)
                                    for v in value) + "]"
        parts.append(f"{key}: {value}")
    return f"{name} ({', '.join(parts)})"
