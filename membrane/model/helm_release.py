"""From Helm values to the cluster configuration: install, upgrade and the effective configuration.

``resolve`` turns user-supplied values (nested, as ``helm get values`` shows them) into a validated
ClusterConfig and the warnings to print, following the key table of :mod:`membrane.model.helm_keys`.
All refusals of one command are reported together. ``upgrade_blockers`` says which changes a
running lab cannot take. ``effective_options`` is what ``membrane dbg config`` prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from membrane.model import helm_keys
from membrane.model.config import ClusterConfig
from membrane.model.errors import ValidationError
from membrane.model.helm_keys import Fixed, Misspelt, NoEffect, NotYet, Setting
from membrane.model.helm_values import Values, flatten, merge, set_path

Validator = Callable[[Any], object]  # raises ValueError with the reason

# Attributes a running lab cannot change, and why (upgrade refuses them).
IMMUTABLE = {
    "cluster_name": "the cluster name is the prefix of everything in the cluster store",
    "ipam_mode": "nodes and pods hold addresses of the IPAM mode the lab was created with",
    "cluster_pool_ipv4_pod_cidr_list": "the nodes' pod CIDRs were allocated from this pool",
    "cluster_pool_ipv4_mask_size": "the nodes' pod CIDRs were allocated with this size",
    "max_pods_per_node": "the kubelet reads maxPods when the lab is created",
    "routing_mode": "pods were created with the MTU and routes of the routing mode the lab was created with",
    "tunnel_protocol": "the nodes' tunnel devices were created with it",
    "tunnel_port": "the nodes' tunnel devices were created with it",
    "encapsulation_mode": "pods were created with the MTU and routes of the encapsulation the lab was created with",
    "encapsulation_type": "pods were created with the MTU of the encapsulation the lab was created with",
}


@dataclass
class Resolved:
    config: ClusterConfig
    warned: dict[str, str] = field(default_factory=dict)  # key -> warning

    @property
    def warnings(self) -> list[str]:
        return list(self.warned.values())


def show(value: Any) -> str:
    """A value as it would be typed after ``--set key=``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "{" + ",".join(show(v) for v in value) + "}"
    if value is None:
        return "null"
    return str(value)


def _same(fixed: Any, value: Any) -> bool:
    if isinstance(fixed, bool) and isinstance(value, str):
        return value.lower() == str(fixed).lower()
    if isinstance(fixed, int) and not isinstance(fixed, bool) and isinstance(value, str):
        return value.strip() == str(fixed)
    if isinstance(fixed, str):
        return str(value).lower() == fixed.lower()
    return bool(type(fixed) is type(value) and fixed == value)


def _coerce(current: Any, value: Any) -> Any:
    """``value`` as the type of the attribute's current value; ValueError with the reason."""
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError("expected true or false")
    if isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise ValueError("expected an integer")
    if isinstance(current, list):
        items = value if isinstance(value, list) else str(value).split(",")
        if any(isinstance(v, dict | list) for v in items):
            raise ValueError("expected a list of strings")
        return [show(v).strip() for v in items if show(v).strip()]
    if isinstance(value, dict | list):
        raise ValueError("expected a single value")
    return show(value)


def resolve(values: Values, validators: dict[str, Validator] | None = None) -> Resolved:
    """ClusterConfig from user-supplied values (defaults for the rest); ValidationError lists every refusal."""
    cfg = ClusterConfig()
    out = Resolved(cfg)
    errors: list[str] = []
    not_yet: dict[str, list[str]] = {}  # feature -> the values asking for it (one message per feature)
    for key, value in sorted(flatten(values).items()):
        entry = helm_keys.lookup(key)
        if entry is None:
            hint = helm_keys.suggest(key)
            errors.append(f"{key}: unknown key, not in Cilium's chart" + (f" (did you mean {hint}?)" if hint else ""))
        elif isinstance(entry, Setting):
            try:
                coerced = _coerce(getattr(cfg, entry.attr), value)
                if validators and entry.attr in validators:
                    validators[entry.attr](coerced)
            except ValueError as exc:
                errors.append(f"{key}={show(value)}: {exc}")
                continue
            setattr(cfg, entry.attr, coerced)
        elif isinstance(entry, Fixed):
            if not _same(entry.value, value):
                if entry.refuse_other:
                    errors.append(f"{key}={show(value)}: {entry.why}")
                else:
                    out.warned[key] = f"{key}={show(value)} has no effect in Membrane: {entry.why}"
        elif isinstance(entry, NoEffect):
            out.warned[key] = f"{key}={show(value)} has no effect in the lab: {entry.why}"
        elif isinstance(entry, NotYet):
            if entry.off is None or not _same(entry.off, value):
                not_yet.setdefault(entry.feature, []).append(f"{key}={show(value)}")
        elif isinstance(entry, Misspelt):
            out.warned[key] = (f"{key} is not a key of Cilium's chart and is ignored, as Helm ignores it; "
                               f"the key is {entry.real} ({entry.why})")
    errors += [f"{', '.join(asked)}: {feature} is not implemented yet" for feature, asked in not_yet.items()]
    if errors:
        raise ValidationError("; ".join(errors))
    try:
        cfg.validate(prefix="values")
    except ValidationError as exc:
        raise ValidationError(exc.reason) from None
    return out


def _helm_key(attr: str) -> str:
    for key, entry in helm_keys.KEYS.items():
        if isinstance(entry, Setting) and entry.attr == attr:
            return key
    return next((k for k, a in ClusterConfig.HELM_KEYS.items() if a == attr), attr)


def upgrade_blockers(running: ClusterConfig, new: ClusterConfig) -> list[str]:
    """Why ``new`` cannot be rolled out on a lab running ``running`` (empty: it can)."""
    out = []
    for attr, why in IMMUTABLE.items():
        old, now = getattr(running, attr), getattr(new, attr)
        if old != now:
            out.append(f"{_helm_key(attr)}: {show(old)} -> {show(now)} needs a new lab ({why})")
    return out


def _go(value: Any) -> str:
    """A value as Go's %v prints it (cilium-dbg config)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + " ".join(_go(v) for v in value) + "]"
    return str(value)


def effective_options(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(option, value) rows of ``cilium-dbg config --all`` for an agent's configuration (its to_dict)."""
    cfg = ClusterConfig.from_dict(config)
    rows = []
    for option, entry in helm_keys.options():
        if isinstance(entry, Setting):
            rows.append((option, _go(getattr(cfg, entry.attr))))
        elif isinstance(entry, Fixed):
            rows.append((option, _go(entry.value)))
        elif isinstance(entry, NotYet):
            rows.append((option, _go(entry.off)))
    return rows


def computed_values(config: ClusterConfig, user: Values) -> Values:
    """``helm get values --all``: every key of the table with the value in force, the user's on top."""
    out: Values = {}
    for key in helm_keys.known_keys():
        if key.endswith(".*"):
            continue
        entry = helm_keys.lookup(key)
        if isinstance(entry, Setting):
            value = getattr(config, entry.attr)
        elif isinstance(entry, Fixed):
            value = entry.value
        elif isinstance(entry, NotYet) and entry.off is not None:
            value = entry.off
        else:
            continue
        set_path(out, key.split("."), value)
    return merge(out, user)
