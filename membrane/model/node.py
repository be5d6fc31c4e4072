"""Nodes: registered by the lab and the agents, never applied by users (the kind is read-only)."""

from __future__ import annotations

from typing import Any

from membrane.model.fields import Fields, as_str, check_cidr

NODE_SPEC_FIELDS = ("podCIDR", "podCIDRs", "providerID", "unschedulable", "taints", "configSource", "externalID")
READ_ONLY_REASON = "Node objects are managed by the cluster (registered by each node's agent); they cannot be applied or deleted"


def check_node(obj: dict[str, Any]) -> None:
    """Validate a Node's spec in place (used for objects the cluster itself writes)."""
    if obj.get("spec") is None:
        return
    f = Fields(obj["spec"], "spec", NODE_SPEC_FIELDS)
    cidr = f.string("podCIDR")
    if cidr:
        check_cidr(cidr, f.at("podCIDR"))
    for path, value in f.each("podCIDRs"):
        check_cidr(as_str(value, path), path)
    f.string("providerID")
    f.string("externalID")
    f.boolean("unschedulable")
    f.opaque("taints", kind=list)
    f.opaque("configSource", kind=dict)
