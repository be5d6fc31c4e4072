"""ObjectMeta: names, namespaces, labels and annotations of every object (and of pod templates)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from membrane.model import names
from membrane.model.fields import Fields
from membrane.model.labels import check_annotations, check_labels

METADATA_FIELDS = (
    "name", "generateName", "namespace", "labels", "annotations", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences", "finalizers",
    "managedFields", "selfLink",
)
OWNER_REFERENCE_FIELDS = ("apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion")


def _check_common(f: Fields) -> None:
    check_labels(f.default("labels", {}), f.at("labels"))
    check_annotations(f.default("annotations", {}), f.at("annotations"))
    f.string("uid")
    f.string("resourceVersion")
    f.integer("generation", lo=0, int64=True)
    f.string("creationTimestamp")
    f.string("deletionTimestamp")
    f.integer("deletionGracePeriodSeconds", lo=0, int64=True)
    f.strings("finalizers")
    f.opaque("managedFields", kind=list)
    f.string("selfLink")
    for path, ref in f.each("ownerReferences"):
        o = Fields(ref, path, OWNER_REFERENCE_FIELDS)
        o.string("apiVersion", required=True)
        o.string("kind", required=True)
        o.string("name", required=True)
        o.string("uid")
        o.boolean("controller")
        o.boolean("blockOwnerDeletion")


def check_object_meta(
    data: Any,
    path: str,
    *,
    namespaced: bool,
    default_namespace: str,
    name_check: Callable[[str], str | None] = names.dns1123_subdomain_error,
) -> dict[str, Any]:
    """Validate a top-level object's metadata in place: name required, namespace filled or dropped."""
    f = Fields({} if data is None else data, path, METADATA_FIELDS)
    f.string("generateName")
    f.string("name", required=True, check=name_check)
    if namespaced:
        f.string("namespace", check=names.dns1123_label_error)
        if not f.raw("namespace"):
            f.set("namespace", default_namespace)
    else:
        # Cluster-scoped objects have no namespace; kubectl/the API server silently clear it.
        f.data.pop("namespace", None)
    _check_common(f)
    return f.data


def check_template_meta(data: Any, path: str) -> dict[str, Any]:
    """Metadata of a pod template: every field optional, labels and annotations default to {}."""
    f = Fields({} if data is None else data, path, METADATA_FIELDS)
    f.string("generateName")
    f.string("name", check=names.dns1123_subdomain_error)
    f.string("namespace", check=names.dns1123_label_error)
    _check_common(f)
    return f.data

