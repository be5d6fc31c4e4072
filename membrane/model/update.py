"""Update validation: fields the API server freezes once an object exists.

``check_update(old, new)`` is what Kubernetes' ``ValidateXUpdate`` functions do for the fields
Membrane acts on; it runs on the stored object and the validated new one, inside the transaction
that would write the new one, so a refused update stores nothing. Errors read like the API server's:
``spec.nodeName: Invalid value: "k8s-w2": field is immutable``.

Frozen here:
- Pod ``spec.nodeName`` once bound: the sandbox, its address and its endpoint live on that node
  (re-applying without ``nodeName`` keeps the binding: that is ``apply``'s merge, not a change).
- Deployment ``spec.selector`` (immutable in apps/v1): the pods it owns would be orphaned.
- Service ``spec.clusterIP`` once set (an address or ``None``), unless the Service is, or becomes,
  ``ExternalName``; re-applying without a clusterIP is not a change either.
"""

from __future__ import annotations

from typing import Any

from membrane.model.fields import invalid

IMMUTABLE = "field is immutable"


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _check_pod(old: dict[str, Any], new: dict[str, Any]) -> None:
    before, after = _spec(old).get("nodeName") or "", _spec(new).get("nodeName") or ""
    if before and after and before != after:
        raise invalid("spec.nodeName", after, IMMUTABLE)


def _check_deployment(old: dict[str, Any], new: dict[str, Any]) -> None:
    before, after = _spec(old).get("selector"), _spec(new).get("selector")
    if before is not None and after != before:
        raise invalid("spec.selector", after, IMMUTABLE)


def _check_service(old: dict[str, Any], new: dict[str, Any]) -> None:
    old_spec, new_spec = _spec(old), _spec(new)
    if "ExternalName" in (old_spec.get("type"), new_spec.get("type")):
        return
    before, after = old_spec.get("clusterIP") or "", new_spec.get("clusterIP") or ""
    if before and after and before != after:
        raise invalid("spec.clusterIP", after, IMMUTABLE)


_CHECKS = {"Pod": _check_pod, "Deployment": _check_deployment, "Service": _check_service}


def check_update(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Raise ValidationError (field path, API server wording) when ``new`` changes a frozen field."""
    if old.get("kind") != new.get("kind"):
        return
    check = _CHECKS.get(str(new.get("kind")))
    if check is not None:
        check(old, new)
