"""Reserved identities, the numeric identity space and policy entities (cilium-semantics §1.4, §1.5, §2.5).

An entity selects identities by their labels: ``world`` = every identity carrying ``reserved:world``
(ID 2, and node-local CIDR identities, which carry it too; 9 and 10 in dual-stack), ``cluster`` = the
reserved in-cluster identities plus every identity of the local cluster, ``all`` = everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import IntEnum

from membrane.identity.labels import (
    CLUSTER_LABEL,
    DEFAULT_CLUSTER,
    SOURCE_K8S,
    SOURCE_RESERVED,
    Label,
    LabelSet,
)


class ReservedIdentity(IntEnum):
    UNKNOWN = 0
    HOST = 1
    WORLD = 2
    UNMANAGED = 3
    HEALTH = 4
    INIT = 5
    REMOTE_NODE = 6
    KUBE_APISERVER = 7
    INGRESS = 8
    WORLD_IPV4 = 9
    WORLD_IPV6 = 10


MIN_RESERVED = 1
MAX_RESERVED = 255  # 1..127 reserved, 128..255 user-reserved fixed identities
MIN_CLUSTER_IDENTITY = 256
MAX_CLUSTER_IDENTITY = 65535
LOCAL_SCOPE = 1 << 24  # node-local identities (CIDR, FQDN): LOCAL_SCOPE | n, n = 1 … 0xFFFFFF
MIN_LOCAL_IDENTITY = LOCAL_SCOPE | 1
MAX_LOCAL_IDENTITY = LOCAL_SCOPE | 0xFFFFFF

# name -> (id, reserved label names)
_RESERVED: dict[int, tuple[str, tuple[str, ...]]] = {
    1: ("host", ("host",)),
    2: ("world", ("world",)),
    3: ("unmanaged", ("unmanaged",)),
    4: ("health", ("health",)),
    5: ("init", ("init",)),
    6: ("remote-node", ("remote-node",)),
    7: ("kube-apiserver", ("kube-apiserver", "remote-node")),
    8: ("ingress", ("ingress",)),
    9: ("world-ipv4", ("world-ipv4",)),
    10: ("world-ipv6", ("world-ipv6",)),
}
_DUAL_STACK_ONLY = (9, 10)

ENTITIES = (
    "all", "world", "world-ipv4", "world-ipv6", "cluster", "host", "remote-node", "kube-apiserver", "health",
    "init", "unmanaged", "ingress", "none",
)
# Entities that are exactly "identities carrying reserved:<name>".
_LABEL_ENTITIES = ("host", "remote-node", "kube-apiserver", "health", "init", "unmanaged", "ingress",
                   "world-ipv4", "world-ipv6")
_CLUSTER_RESERVED = ("host", "remote-node", "init", "ingress", "health", "unmanaged", "kube-apiserver")


def reserved_name(identity: int) -> str | None:
    """``host`` for 1, …; None for a non-reserved number."""
    entry = _RESERVED.get(identity)
    return entry[0] if entry else None


def reserved_labels(identity: int) -> LabelSet:
    """The labels of a reserved identity (7 is ``reserved:kube-apiserver`` + ``reserved:remote-node``)."""
    entry = _RESERVED.get(identity)
    if entry is None:
        raise KeyError(f"{identity} is not a reserved identity")
    return LabelSet(Label(SOURCE_RESERVED, name) for name in entry[1])


def reserved_identities(dual_stack: bool = False) -> dict[int, LabelSet]:
    """Every reserved identity in use (9 and 10 only in dual-stack) with its labels."""
    return {n: reserved_labels(n) for n in _RESERVED if dual_stack or n not in _DUAL_STACK_ONLY}


def reserved_identity_of(labels: LabelSet) -> int | None:
    """The reserved identity a label set maps to, or None when it needs an allocated identity.

    ``reserved:host`` wins (the host endpoint may also carry ``reserved:kube-apiserver``); a set of only
    reserved labels equal to a reserved identity's labels maps to it.
    """
    if Label(SOURCE_RESERVED, "host") in labels:
        return int(ReservedIdentity.HOST)
    if not labels or any(lbl.source != SOURCE_RESERVED for lbl in labels):
        return None
    for n in _RESERVED:
        if reserved_labels(n) == labels:
            return n
    return None


def is_reserved(identity: int) -> bool:
    return MIN_RESERVED <= identity <= MAX_RESERVED


def is_cluster_identity(identity: int) -> bool:
    return MIN_CLUSTER_IDENTITY <= identity <= MAX_CLUSTER_IDENTITY


def is_local_identity(identity: int) -> bool:
    return MIN_LOCAL_IDENTITY <= identity <= MAX_LOCAL_IDENTITY


def entity_selects(entity: str, labels: LabelSet, cluster: str = DEFAULT_CLUSTER) -> bool:
    """Whether the policy entity ``entity`` selects an identity with ``labels``."""
    if entity == "all":
        return True
    if entity == "none":
        return False
    if entity == "world":
        return any(lbl.source == SOURCE_RESERVED and lbl.key in ("world", "world-ipv4", "world-ipv6")
                   for lbl in labels)
    if entity in _LABEL_ENTITIES:
        return Label(SOURCE_RESERVED, entity) in labels
    if entity == "cluster":
        return (any(Label(SOURCE_RESERVED, name) in labels for name in _CLUSTER_RESERVED)
                or Label(SOURCE_K8S, CLUSTER_LABEL, cluster) in labels)
    raise ValueError(f"unknown entity {entity!r} (known: {', '.join(ENTITIES)})")


def entity_identities(
    entity: str, identities: Mapping[int, LabelSet] | Iterable[tuple[int, LabelSet]] = (),
    cluster: str = DEFAULT_CLUSTER, dual_stack: bool = False,
) -> frozenset[int]:
    """The identities ``entity`` selects among the reserved ones and ``identities`` (allocated / local)."""
    known = dict(reserved_identities(dual_stack))
    items = identities.items() if isinstance(identities, Mapping) else identities
    known.update(items)
    return frozenset(n for n, labels in known.items() if entity_selects(entity, labels, cluster))
