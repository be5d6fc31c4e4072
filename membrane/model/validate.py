"""Validation entry point: one manifest in, a normalised deep copy (or a precise error) out.

``validate_object`` checks the envelope (apiVersion/kind, top-level fields, metadata) and hands the
rest to the kind's module. Errors read ``<where>: <field path>: <reason>``, e.g.
``demo.yaml:doc 2: spec.containers[0].image: Required value``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from membrane.model import names
from membrane.model.bgp import (
    check_bgp_advertisement,
    check_bgp_cluster_config,
    check_bgp_node_config_override,
    check_bgp_peer_config,
)
from membrane.model.calico_ippool import check_calico_ip_pool
from membrane.model.cidrgroup import check_cidr_group
from membrane.model.configmap import FIELDS as CONFIGMAP_FIELDS
from membrane.model.configmap import check_configmap
from membrane.model.deployment import check_deployment
from membrane.model.egress_gw import check_egress_policy
from membrane.model.errors import ValidationError
from membrane.model.fields import Fields, forbidden, invalid, join
from membrane.model.ippool import check_ip_pool
from membrane.model.kinds import kind_for_manifest
from membrane.model.l2policy import check_l2_policy
from membrane.model.loader import Located
from membrane.model.metadata import check_object_meta
from membrane.model.namespace import check_namespace
from membrane.model.netpol import check_network_policy
from membrane.model.node import READ_ONLY_REASON, check_node
from membrane.model.pod import check_pod
from membrane.model.policy import check_cilium_policy
from membrane.model.secret import FIELDS as SECRET_FIELDS
from membrane.model.secret import check_secret
from membrane.model.service import check_service

_ENVELOPE = ("apiVersion", "kind", "metadata", "spec", "status")


@dataclass(frozen=True)
class _KindRules:
    check: Callable[[dict[str, Any]], None]
    name_check: Callable[[str], str | None] = names.dns1123_subdomain_error
    fields: tuple[str, ...] = _ENVELOPE


_RULES = MappingProxyType({
    "Namespace": _KindRules(check_namespace, names.dns1123_label_error),
    "Pod": _KindRules(check_pod),
    "Deployment": _KindRules(check_deployment),
    "Node": _KindRules(check_node),
    "Service": _KindRules(check_service, names.dns1035_label_error),
    "CiliumNetworkPolicy": _KindRules(
        lambda obj: check_cilium_policy(obj, clusterwide=False), fields=(*_ENVELOPE, "specs")
    ),
    "CiliumClusterwideNetworkPolicy": _KindRules(
        lambda obj: check_cilium_policy(obj, clusterwide=True), fields=(*_ENVELOPE, "specs")
    ),
    "NetworkPolicy": _KindRules(check_network_policy),
    "CiliumLoadBalancerIPPool": _KindRules(check_ip_pool),
    "CiliumL2AnnouncementPolicy": _KindRules(check_l2_policy),
    "CiliumBGPClusterConfig": _KindRules(check_bgp_cluster_config),
    "CiliumBGPPeerConfig": _KindRules(check_bgp_peer_config),
    "CiliumBGPAdvertisement": _KindRules(check_bgp_advertisement),
    "CiliumBGPNodeConfigOverride": _KindRules(check_bgp_node_config_override),
    "ConfigMap": _KindRules(check_configmap, fields=CONFIGMAP_FIELDS),
    "Secret": _KindRules(check_secret, fields=SECRET_FIELDS),
    "CiliumCIDRGroup": _KindRules(check_cidr_group),
    "IPPool": _KindRules(check_calico_ip_pool),
    "CiliumEgressGatewayPolicy": _KindRules(check_egress_policy),
})


def _validate(obj: Any, default_namespace: str, allow_read_only: bool, enforce_namespace: bool) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ValidationError(f"Invalid value: {type(obj).__name__}: a manifest must be an object with apiVersion and kind")
    info = kind_for_manifest(obj.get("apiVersion"), obj.get("kind"))
    if info.read_only and not allow_read_only:
        raise forbidden("kind", READ_ONLY_REASON)
    rules = _RULES.get(info.kind)
    if rules is None:  # Endpoints, EndpointSlice: written by controllers, never from a manifest
        raise forbidden("kind", f"{info.kind} objects are written by the cluster's controllers, not from manifests")
    out = copy.deepcopy(obj)
    top = Fields(out, "", rules.fields)
    meta = top.raw("metadata")
    given_ns = meta.get("namespace") if isinstance(meta, dict) else None
    out["metadata"] = check_object_meta(
        meta,
        "metadata",
        namespaced=info.namespaced,
        default_namespace=default_namespace,
        name_check=rules.name_check,
    )
    if enforce_namespace and info.namespaced and given_ns and given_ns != default_namespace:
        raise invalid(
            join("metadata", "namespace"), given_ns,
            f"the namespace from the provided object does not match the namespace {default_namespace!r}; "
            f"pass --namespace={given_ns} to use it",
        )
    rules.check(out)
    top.opaque("status", kind=dict)
    return out


def validate_object(
    obj: dict[str, Any],
    where: str,
    default_namespace: str = "default",
    *,
    allow_read_only: bool = False,
    enforce_namespace: bool = False,
) -> dict[str, Any]:
    """A normalised deep copy of ``obj``; ``obj`` itself is never modified.

    ``where`` prefixes every error (``demo.yaml:doc 2``). Namespaced kinds get ``default_namespace``
    when they name none; cluster-scoped kinds lose any namespace. ``allow_read_only`` admits kinds
    users may not apply (Node), for objects the cluster writes itself. ``enforce_namespace``: an
    explicit ``--namespace`` was given, so a different namespace in the object is an error.
    """
    try:
        return _validate(obj, default_namespace, allow_read_only, enforce_namespace)
    except ValidationError as err:
        raise (err.within(where) if where else err) from None


def validate_documents(
    documents: Iterable[Located], default_namespace: str = "default", *, enforce_namespace: bool = False
) -> list[dict[str, Any]]:
    """Validate what ``load_paths``/``load_located`` returned; the first bad document raises."""
    return [
        validate_object(doc.obj, doc.where, default_namespace, enforce_namespace=enforce_namespace)
        for doc in documents
    ]
