"""Field-level checking of JSON-like objects, with Kubernetes-style error reasons.

A validator wraps each mapping it models in a :class:`Fields`, which rejects unknown keys (like
``kubectl apply --validate=strict``), reads typed values and fills defaults. Every failure raises a
:class:`ValidationError` whose ``field_path`` is the offending field (``spec.containers[0].image``)
and whose reason reads like the API server's (``Required value``, ``Invalid value: 0: …``).

The wrapped mapping is modified in place (defaults, normalised values): validators always work on a
private deep copy, so a failure leaves the caller's object untouched.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable
from typing import Any

from membrane.model.errors import ValidationError

# Kubernetes' integer fields are int32 (replicas, ports, priorities, most *Seconds) or int64
# (generation, termination grace and active deadline seconds); the API server refuses values
# that do not fit, and so does Fields.integer.
INT32_RANGE = (-(2**31), 2**31 - 1)
INT64_RANGE = (-(2**63), 2**63 - 1)


def join(path: str, key: str) -> str:
    """``spec`` + ``containers`` -> ``spec.containers``."""
    return f"{path}.{key}" if path else key


def index(path: str, i: int) -> str:
    """``spec.containers`` + 0 -> ``spec.containers[0]``."""
    return f"{path}[{i}]"


def show(value: Any) -> str:
    """A value as it appears in an error: strings quoted, everything else as JSON."""
    try:
        return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


# ---- error constructors (reason wording follows Kubernetes' field errors) ----

def missing(path: str, detail: str = "") -> ValidationError:
    """``Required value``: the field is absent, null or empty."""
    return ValidationError(f"Required value: {detail}" if detail else "Required value", path)


def invalid(path: str, value: Any, why: str) -> ValidationError:
    return ValidationError(f"Invalid value: {show(value)}: {why}", path)


def unsupported(path: str, value: Any, allowed: Iterable[str]) -> ValidationError:
    supported = ", ".join(show(a) for a in sorted(allowed))
    return ValidationError(f"Unsupported value: {show(value)}: supported values: {supported}", path)


def duplicate(path: str, value: Any) -> ValidationError:
    return ValidationError(f"Duplicate value: {show(value)}", path)


def forbidden(path: str, why: str) -> ValidationError:
    return ValidationError(f"Forbidden: {why}", path)


def too_many(path: str, count: int, limit: int) -> ValidationError:
    return ValidationError(f"Too many: {count}: must have at most {limit} items", path)


def unknown_field(parent: str, key: str) -> ValidationError:
    """Reported on the object holding the stray key, naming the whole path like kubectl does."""
    return ValidationError(f'unknown field "{join(parent, key)}"', parent)


# ---- typed value checks ----

def _kind_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _type_error(path: str, value: Any, expected: str) -> ValidationError:
    return invalid(path, value, f"must be {expected}, not {_kind_name(value)}")


def as_mapping(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _type_error(path, value, "an object")
    return value


def as_list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _type_error(path, value, "a list")
    return value


def as_str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        hint = " (quote it in YAML)" if isinstance(value, bool | int | float) else ""
        raise invalid(path, value, f"must be a string, not {_kind_name(value)}{hint}")
    return value


def as_int(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _type_error(path, value, "an integer")
    return value


def as_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _type_error(path, value, "a boolean")
    return value


def is_decimal(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts "²" and "٣", which ``int()`` refuses or misreads."""
    return text.isascii() and text.isdigit()


def decimal_value(text: str, cap: int) -> int:
    """A decimal string's value, or ``cap + 1`` when it is larger than ``cap`` (without converting a
    5000-digit string, which Python refuses)."""
    digits = text.lstrip("0") or "0"
    return int(digits) if len(digits) <= len(str(cap)) else cap + 1


def in_range(value: int, lo: int, hi: int, path: str) -> int:
    if not lo <= value <= hi:
        raise invalid(path, value, f"must be between {lo} and {hi}, inclusive")
    return value


def check_name(value: str, path: str, checker: Callable[[str], str | None]) -> str:
    """Apply one of the :mod:`membrane.model.names` checkers, blaming ``path``."""
    why = checker(value)
    if why is not None:
        raise invalid(path, value, why)
    return value


def check_ip(value: str, path: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)") from None
    return value


def check_cidr(value: str, path: str, *, allow_bare_ip: bool = False) -> str:
    """``10.0.0.0/8`` (host bits are tolerated, as Go's ParseCIDR does); optionally a bare IP."""
    if "/" not in value:
        if allow_bare_ip:
            return check_ip(value, path)
        raise invalid(path, value, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise invalid(path, value, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)") from None
    return value


def ipv4_cidr_list_item(where: str, raw: Any, earlier: list[ipaddress.IPv4Network], list_path: str,
                        ipv6_reason: str) -> ipaddress.IPv4Network:
    """Item ``where`` of the IPv4 CIDR list at ``list_path``: a CIDR (host bits tolerated), IPv4
    (``ipv6_reason`` says why not IPv6), overlapping none of the ``earlier`` items."""
    text = as_str(raw, where).strip()
    try:
        net = ipaddress.ip_network(text, strict=False) if "/" in text else None
    except ValueError:
        net = None
    if net is None:
        raise invalid(where, raw, "must be a valid CIDR value, (e.g. 10.9.8.0/24)")
    if not isinstance(net, ipaddress.IPv4Network):
        raise invalid(where, raw, ipv6_reason)
    for j, other in enumerate(earlier):
        if net.overlaps(other):
            what = "duplicates" if net == other else "overlaps"
            raise invalid(where, raw, f"{what} {index(list_path, j)} ({other})")
    return net


class Fields:
    """One mapping under validation: known keys only, typed getters, defaults written in place."""

    def __init__(self, data: Any, path: str, known: Iterable[str]) -> None:
        self.data = as_mapping(data, path)
        self.path = path
        allowed = set(known)
        for key in list(self.data):
            if not isinstance(key, str):
                raise invalid(path, key, "object keys must be strings")
            if key not in allowed:
                raise unknown_field(path, key)
            if self.data[key] is None:
                # An explicit null is the same as leaving the field out (as in Kubernetes).
                del self.data[key]

    def at(self, key: str) -> str:
        return join(self.path, key)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    def default(self, key: str, value: Any) -> Any:
        return self.data.setdefault(key, value)

    def _present(self, key: str, required: bool) -> bool:
        if key not in self.data:
            if required:
                raise missing(self.at(key))
            return False
        return True

    def string(self, key: str, *, required: bool = False, check: Callable[[str], str | None] | None = None,
               default: str | None = None) -> str | None:
        """A string; ``required`` also rejects ``""`` like the API server does."""
        if not self._present(key, required):
            if default is not None:
                self.data[key] = default
            return default
        value = as_str(self.data[key], self.at(key))
        if required and value == "":
            raise missing(self.at(key))
        if check is not None and value != "":
            check_name(value, self.at(key), check)
        return value

    def integer(self, key: str, *, required: bool = False, lo: int | None = None, hi: int | None = None,
                default: int | None = None, int64: bool = False) -> int | None:
        """An integer that fits the field's Go type (int32 unless ``int64``), within ``lo``..``hi``."""
        if not self._present(key, required):
            if default is not None:
                self.data[key] = default
            return default
        value = as_int(self.data[key], self.at(key))
        self.data[key] = value
        type_lo, type_hi = INT64_RANGE if int64 else INT32_RANGE
        if not type_lo <= value <= type_hi:
            lo_shown = type_lo if lo is None else lo
            hi_shown = type_hi if hi is None else hi
            raise invalid(self.at(key), value, f"must be between {lo_shown} and {hi_shown}, inclusive")
        if lo is not None and hi is not None:
            in_range(value, lo, hi, self.at(key))
        elif lo is not None and value < lo:
            raise invalid(self.at(key), value, f"must be greater than or equal to {lo}")
        return value

    def boolean(self, key: str) -> bool | None:
        if key not in self.data:
            return None
        return as_bool(self.data[key], self.at(key))

    def choice(self, key: str, allowed: Iterable[str], *, default: str | None = None,
               required: bool = False) -> str | None:
        value = self.string(key, required=required, default=default)
        if value == "" and default is not None:  # an empty enum value means "the default"
            value = default
            self.data[key] = value
        allowed = tuple(allowed)
        if value is not None and value not in allowed:
            raise unsupported(self.at(key), value, allowed)
        return value

    def mapping(self, key: str, *, required: bool = False) -> dict[str, Any] | None:
        if not self._present(key, required):
            return None
        return as_mapping(self.data[key], self.at(key))

    def sequence(self, key: str, *, required: bool = False, max_items: int | None = None,
                 non_empty: bool = False) -> list[Any] | None:
        if not self._present(key, required):
            return None
        value = as_list(self.data[key], self.at(key))
        if non_empty and not value:
            raise missing(self.at(key))
        if max_items is not None and len(value) > max_items:
            raise too_many(self.at(key), len(value), max_items)
        return value

    def strings(self, key: str, *, required: bool = False) -> list[str] | None:
        values = self.sequence(key, required=required)
        if values is not None:
            for i, v in enumerate(values):
                as_str(v, index(self.at(key), i))
        return values

    def string_map(self, key: str) -> dict[str, str] | None:
        """A ``map[string]string``; a null value reads as "" (Go's decoding of null into a string)."""
        value = self.mapping(key)
        if value is None:
            return None
        for k in list(value):
            if value[k] is None:
                value[k] = ""
            as_str(value[k], join(self.at(key), str(k)))
        return value

    def opaque(self, *keys: str, kind: type[dict] | type[list]) -> None:
        """Real Kubernetes fields Membrane does not model: only their outer type (object or list) is checked."""
        for key in keys:
            if key in self.data:
                (as_mapping if kind is dict else as_list)(self.data[key], self.at(key))

    def each(self, key: str, *, required: bool = False, max_items: int | None = None,
             non_empty: bool = False) -> list[tuple[str, Any]]:
        """(path, item) for every item of a list field."""
        values = self.sequence(key, required=required, max_items=max_items, non_empty=non_empty)
        return [(index(self.at(key), i), v) for i, v in enumerate(values or [])]
