"""Namespaces: a DNS-label name and the ``kubernetes.io/metadata.name`` label the API server adds."""

from __future__ import annotations

from typing import Any

from membrane.model.fields import Fields

# Kubernetes labels every namespace with its own name; Cilium exposes it to policies as
# io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name.
NAME_LABEL = "kubernetes.io/metadata.name"


def check_namespace(obj: dict[str, Any]) -> None:
    """Validate a Namespace in place (metadata is checked by the caller) and set its name label."""
    if obj.get("spec") is not None:
        Fields(obj["spec"], "spec", ("finalizers",)).strings("finalizers")
    obj["metadata"]["labels"][NAME_LABEL] = obj["metadata"]["name"]
