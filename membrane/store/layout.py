"""Where things live in etcd (ARCHITECTURE.md §4): every key of one cluster, in one place.

    /membrane/<cluster>/config
    /membrane/<cluster>/resources/<group>/<kind>/<namespace>/<name>     (namespace "_" if cluster-scoped)
        (coordination.k8s.io/Lease/kube-system/cilium-l2announce-*: L2 announcement leases, each attached to
         its holder's etcd lease of leaseDuration: l2_leases.py)
    /membrane/<cluster>/nodes/<name>                                    (agent liveness: 15 s lease)
    /membrane/<cluster>/identities/id/<n>, identities/labels/<hash>, identities/refs/<n>/<node>
    /membrane/<cluster>/ipcache/<ip or prefix>                          (refs and ipcache: 15 min endpoint lease)
    /membrane/<cluster>/ipam/<part>/...        (ipam/services/{clusterip,nodeport}/<value>: service_alloc.py)
    /membrane/<cluster>/leases/<name>

Segments that may contain "/" (CIDRs) are percent-quoted; names that must not contain it are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from membrane.model.errors import ValidationError

ROOT = "/membrane"
CLUSTER_SCOPE = "_"
CORE_GROUP = "core"
_CLUSTER = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def check_segment(what: str, value: Any) -> str:
    """A key segment: a non-empty string without "/", whitespace or control characters."""
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{what} must be a non-empty string, got {value!r}")
    if "/" in value or any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise ValidationError(f"{what} {value!r} must not contain '/', spaces or control characters")
    return value


def quote_segment(value: str) -> str:
    """Percent-quote a free-form segment (an IP prefix like 10.0.1.0/24) so it stays one segment."""
    return quote(value, safe="")


def unquote_segment(value: str) -> str:
    return unquote(value)


def group_of(api_version: str) -> str:
    """The API group of an apiVersion: "cilium.io/v2" -> "cilium.io", "v1" -> "core"."""
    return api_version.split("/", 1)[0] if "/" in api_version else CORE_GROUP


@dataclass(frozen=True, order=True)
class ResourceKey:
    """Identifies one stored object."""

    group: str
    kind: str
    namespace: str
    name: str

    def __post_init__(self) -> None:
        check_segment("group", self.group)
        check_segment("kind", self.kind)
        check_segment("namespace", self.namespace)
        check_segment("name", self.name)

    @classmethod
    def of(cls, value: ResourceKey | tuple[str, str, str, str]) -> ResourceKey:
        return value if isinstance(value, ResourceKey) else cls(*value)

    def __str__(self) -> str:
        ns = "" if self.namespace == CLUSTER_SCOPE else f"{self.namespace}/"
        return f"{self.kind}.{self.group} {ns}{self.name}"


@dataclass(frozen=True)
class StoreLayout:
    """All keys of one cluster."""

    cluster: str

    def __post_init__(self) -> None:
        if not isinstance(self.cluster, str) or not _CLUSTER.match(self.cluster):
            raise ValidationError(
                f"cluster name {self.cluster!r}: must be 1-63 characters of a-z, 0-9 and '-', "
                "starting and ending alphanumeric")

    @property
    def prefix(self) -> str:
        return f"{ROOT}/{self.cluster}/"

    @property
    def config_key(self) -> str:
        return f"{self.prefix}config"

    # resources
    @property
    def resources_prefix(self) -> str:
        return f"{self.prefix}resources/"

    def resource_prefix(self, group: str | None = None, kind: str | None = None,
                        namespace: str | None = None) -> str:
        """The prefix of all objects of a group, a kind, or a kind in one namespace."""
        out = self.resources_prefix
        if group is None:
            if kind is not None or namespace is not None:
                raise ValidationError("resource prefix: kind or namespace given without group")
            return out
        out += check_segment("group", group) + "/"
        if kind is None:
            if namespace is not None:
                raise ValidationError("resource prefix: namespace given without kind")
            return out
        out += check_segment("kind", kind) + "/"
        if namespace is not None:
            out += check_segment("namespace", namespace) + "/"
        return out

    def resource_key(self, key: ResourceKey) -> str:
        return f"{self.resources_prefix}{key.group}/{key.kind}/{key.namespace}/{key.name}"

    def parse_resource_key(self, path: str) -> ResourceKey:
        """The ResourceKey of a stored key; ValidationError if it is not a resource key of this cluster."""
        if not path.startswith(self.resources_prefix):
            raise ValidationError(f"store key {path!r} is not under {self.resources_prefix}")
        parts = path[len(self.resources_prefix):].split("/")
        if len(parts) != 4:
            raise ValidationError(f"store key {path!r}: expected <group>/<kind>/<namespace>/<name>")
        return ResourceKey(*parts)

    # nodes
    @property
    def nodes_prefix(self) -> str:
        return f"{self.prefix}nodes/"

    def node_key(self, node: str) -> str:
        return self.nodes_prefix + check_segment("node name", node)

    # identities
    @property
    def identities_prefix(self) -> str:
        return f"{self.prefix}identities/"

    def identity_id_key(self, identity: int) -> str:
        if not isinstance(identity, int) or identity <= 0:
            raise ValidationError(f"identity {identity!r} must be a positive integer")
        return f"{self.identities_prefix}id/{identity}"

    def identity_labels_key(self, labels_hash: str) -> str:
        return f"{self.identities_prefix}labels/{check_segment('labels hash', labels_hash)}"

    def identity_refs_prefix(self, identity: int) -> str:
        return f"{self.identities_prefix}refs/{identity}/"

    def identity_ref_key(self, identity: int, node: str) -> str:
        return self.identity_refs_prefix(identity) + check_segment("node name", node)

    # ipcache
    @property
    def ipcache_prefix(self) -> str:
        return f"{self.prefix}ipcache/"

    def ipcache_key(self, ip_or_prefix: str) -> str:
        if not ip_or_prefix:
            raise ValidationError("ipcache key: empty IP")
        return self.ipcache_prefix + quote_segment(ip_or_prefix)

    def parse_ipcache_key(self, path: str) -> str:
        if not path.startswith(self.ipcache_prefix):
            raise ValidationError(f"store key {path!r} is not under {self.ipcache_prefix}")
        return unquote_segment(path[len(self.ipcache_prefix):])

    # ipam
    @property
    def ipam_prefix(self) -> str:
        return f"{self.prefix}ipam/"

    def ipam_key(self, *parts: str) -> str:
        """``ipam_key("pools", "default", "10.0.1.0/24")``: each part quoted as one segment."""
        if not parts or any(not p for p in parts):
            raise ValidationError(f"ipam key: parts must be non-empty strings, got {parts!r}")
        return self.ipam_prefix + "/".join(quote_segment(p) for p in parts)

    # leases / leader election
    @property
    def leases_prefix(self) -> str:
        return f"{self.prefix}leases/"

    def lease_key(self, name: str) -> str:
        return self.leases_prefix + check_segment("lease name", name)
