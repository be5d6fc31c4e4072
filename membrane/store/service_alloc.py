"""Service addresses in etcd: one key per allocated ClusterIP or NodePort, written in the apply's transaction.

    /membrane/<cluster>/ipam/services/clusterip/<ip>     -> "namespace/name"
    /membrane/<cluster>/ipam/services/nodeport/<port>    -> "namespace/name"

An apply that stores Services reads these keys, lets ``membrane.loadbalancer.admission`` decide, and adds
to its own transaction: for each new value ``version == 0`` (create-if-absent) and a put, for each value
kept ``value == owner``, for each value given up ``value == owner`` and a delete. Two applies that race
for one value cannot both commit: the loser's transaction fails its compare, is retried from a fresh read,
and is then refused with the API server's message. Deleting a Service deletes its keys in the same
transaction. So a Service in the store holds its addresses by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from membrane.loadbalancer.admission import (
    CLUSTER_IP,
    NODE_PORT,
    AdmissionPlan,
    Allocation,
    admit,
    allocations_of,
)
from membrane.store.etcd import EtcdClient
from membrane.store.layout import StoreLayout
from membrane.store.txn import Compare, Op, value_eq, version_eq

SERVICE_GROUP, SERVICE_KIND = "core", "Service"


def is_service(obj: Any) -> bool:
    return (isinstance(obj, dict) and obj.get("kind") == SERVICE_KIND
            and str(obj.get("apiVersion") or "") == "v1")


def allocation_prefix(layout: StoreLayout, kind: str) -> str:
    return layout.ipam_key("services", kind) + "/"


def allocation_key(layout: StoreLayout, alloc: Allocation) -> str:
    return layout.ipam_key("services", alloc.kind, alloc.value)


def read_owners(client: EtcdClient, layout: StoreLayout) -> tuple[dict[str, str], dict[int, str]]:
    """Who holds which ClusterIP and NodePort, read at one revision."""
    ip_prefix, port_prefix = allocation_prefix(layout, CLUSTER_IP), allocation_prefix(layout, NODE_PORT)
    result = client.txn([], [Op.get_prefix(ip_prefix), Op.get_prefix(port_prefix)])
    ips = {kv.key[len(ip_prefix):]: kv.value.decode() for kv in result.responses[0].kvs}
    ports: dict[int, str] = {}
    for kv in result.responses[1].kvs:
        suffix = kv.key[len(port_prefix):]
        if suffix.isdigit():
            ports[int(suffix)] = kv.value.decode()
    return ips, ports


def plan_txn(layout: StoreLayout, plan: AdmissionPlan) -> tuple[list[Compare], list[Op]]:
    compares: list[Compare] = []
    ops: list[Op] = []
    for alloc in plan.claims:
        key = allocation_key(layout, alloc)
        compares.append(version_eq(key, 0))
        ops.append(Op.put(key, alloc.owner))
    for alloc in plan.holds:
        compares.append(value_eq(allocation_key(layout, alloc), alloc.owner))
    for alloc in plan.releases:
        key = allocation_key(layout, alloc)
        compares.append(value_eq(key, alloc.owner))
        ops.append(Op.delete(key))
    return compares, ops


def admit_services(client: EtcdClient, layout: StoreLayout, drafts: Sequence[dict[str, Any]],
                   olds: Sequence[dict[str, Any] | None]) -> tuple[list[Compare], list[Op]]:
    """Admit the Services among ``drafts`` (filled in place; ``olds``: stored versions, same order).

    Returns the compares and operations the caller's transaction must carry; raises ServiceInvalid.
    """
    pairs = [(d, o) for d, o in zip(drafts, olds, strict=True) if is_service(d)]
    if not pairs:
        return [], []
    ip_owners, port_owners = read_owners(client, layout)
    return plan_txn(layout, admit(pairs, ip_owners, port_owners))


def release_services(client: EtcdClient, layout: StoreLayout,
                     stored: Sequence[dict[str, Any]]) -> tuple[list[Compare], list[Op]]:
    """Compares and deletes that free what the stored Services ``stored`` hold (keys someone else holds
    are left alone)."""
    allocs = [a for svc in stored if is_service(svc) for a in allocations_of(svc)]
    if not allocs:
        return [], []
    keys = [allocation_key(layout, a) for a in allocs]
    result = client.txn([], [Op.get(k) for k in keys])
    compares: list[Compare] = []
    ops: list[Op] = []
    for alloc, key, resp in zip(allocs, keys, result.responses, strict=True):
        if resp.kvs and resp.kvs[0].value.decode() == alloc.owner:
            compares.append(value_eq(key, alloc.owner))
            ops.append(Op.delete(key))
    return compares, ops
