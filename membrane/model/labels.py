"""Labels: key/value syntax, label selectors (matchLabels + matchExpressions), ``membrane label`` edits.

Selectors follow Kubernetes semantics: every ``matchLabels`` pair and every expression must hold;
``In`` needs the key present with one of the values, ``NotIn`` holds when the key is absent or has
another value, ``Exists``/``DoesNotExist`` test presence only; an empty selector matches everything.

Cilium selectors may prefix keys with a label source (``k8s:app``, ``reserved:host``, ``any:app``);
:func:`check_selector` accepts those when asked to. Matching here compares keys literally; mapping
sources onto endpoint labels is the policy engine's job.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from membrane.model import names
from membrane.model.errors import ValidationError
from membrane.model.fields import (
    Fields,
    as_str,
    forbidden,
    index,
    invalid,
    join,
    missing,
    unsupported,
)

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
# Label sources Cilium knows; a selector key "src:key" must use one of them.
CILIUM_SOURCES = (
    "k8s", "container", "reserved", "cidr", "cidrgroup", "fqdn", "node", "unspec", "any", "cni", "gen",
    "directory",
)
# Sources whose keys are Kubernetes label keys (the others carry CIDRs, reserved names, …).
_K8S_STYLE_SOURCES = ("k8s", "container", "unspec", "any", "node")
MAX_ANNOTATIONS_BYTES = 256 * 1024


def label_key_error(key: str, *, sources: bool = False) -> str | None:
    """Why ``key`` is not a valid label key (``None`` if it is). ``sources``: allow ``src:`` prefixes."""
    if sources:
        if key.startswith("$"):
            return None if len(key) > 1 else "reserved label shorthand '$' needs a name"
        source, colon, rest = key.partition(":")
        if colon:
            if source not in CILIUM_SOURCES:
                known = ", ".join(CILIUM_SOURCES)
                return f"unknown label source {source!r} (known sources: {known})"
            if source not in _K8S_STYLE_SOURCES:
                return None if rest else "label key after the source must be non-empty"
            key = rest
    return names.qualified_name_error(key)


def check_label_key(key: Any, path: str, *, sources: bool = False) -> str:
    as_str(key, path)
    why = label_key_error(key, sources=sources)
    if why is not None:
        raise invalid(path, key, why)
    return key


def check_label_value(value: Any, path: str) -> str:
    as_str(value, path)
    why = names.label_value_error(value)
    if why is not None:
        raise invalid(path, value, why)
    return value


def check_labels(labels: Any, path: str, *, sources: bool = False) -> dict[str, str]:
    """A label map (``metadata.labels``, ``nodeSelector``, ``matchLabels``); null values read as ""."""
    if not isinstance(labels, dict):
        raise invalid(path, labels, "must be an object mapping label keys to values")
    for key in list(labels):
        if labels[key] is None:
            labels[key] = ""
        check_label_key(key, path, sources=sources)
        check_label_value(labels[key], join(path, key) if isinstance(key, str) else path)
    return labels


def check_annotations(annotations: Any, path: str) -> dict[str, str]:
    if not isinstance(annotations, dict):
        raise invalid(path, annotations, "must be an object mapping annotation keys to values")
    size = 0
    for key in list(annotations):
        as_str(key, path)
        why = names.qualified_name_error(key.lower())
        if why is not None:
            raise invalid(path, key, why)
        if annotations[key] is None:
            annotations[key] = ""
        as_str(annotations[key], join(path, key))
        size += len(key) + len(annotations[key])
    if size > MAX_ANNOTATIONS_BYTES:
        raise ValidationError(f"Too long: may not be more than {MAX_ANNOTATIONS_BYTES} bytes", path)
    return annotations


def check_selector(data: Any, path: str, *, sources: bool = False) -> dict[str, Any]:
    """Validate a LabelSelector mapping in place (``matchLabels``, ``matchExpressions``)."""
    f = Fields(data, path, ("matchLabels", "matchExpressions"))
    if f.has("matchLabels"):
        check_labels(f.raw("matchLabels"), f.at("matchLabels"), sources=sources)
    for ipath, item in f.each("matchExpressions"):
        e = Fields(item, ipath, ("key", "operator", "values"))
        key = e.string("key", required=True)
        check_label_key(key, e.at("key"), sources=sources)
        op = e.string("operator", required=True)
        if op not in OPERATORS:
            raise unsupported(e.at("operator"), op, OPERATORS)
        values = e.strings("values") or []
        if op in ("In", "NotIn"):
            if not values:
                raise missing(e.at("values"), "must be specified when `operator` is 'In' or 'NotIn'")
            for i, v in enumerate(values):
                check_label_value(v, index(e.at("values"), i))
        elif values:
            raise forbidden(e.at("values"), "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
    return f.data


@dataclass(frozen=True)
class Requirement:
    """One ``matchExpressions`` entry."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "In":
            return present and labels[self.key] in self.values
        if self.operator == "NotIn":
            return not present or labels[self.key] not in self.values
        if self.operator == "Exists":
            return present
        if self.operator == "DoesNotExist":
            return not present
        raise ValueError(f"unknown operator {self.operator!r}")

    def __str__(self) -> str:
        vals = ",".join(sorted(self.values))
        if self.operator == "NotIn" and len(self.values) == 1:
            return f"{self.key}!={self.values[0]}"
        return {
            "In": f"{self.key} in ({vals})",
            "NotIn": f"{self.key} notin ({vals})",
            "Exists": self.key,
            "DoesNotExist": f"!{self.key}",
        }[self.operator]


@dataclass(frozen=True)
class LabelSelector:
    """An immutable label selector; ``LabelSelector()`` (empty) matches every label set."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    @classmethod
    def from_dict(cls, data: Any, path: str = "selector", *, sources: bool = False) -> LabelSelector:
        """Parse (and validate) a selector mapping; raises ValidationError naming ``path``."""
        checked = check_selector(copy.deepcopy(data), path, sources=sources)
        labels = checked.get("matchLabels") or {}
        exprs = tuple(
            Requirement(e["key"], e["operator"], tuple(e.get("values") or ()))
            for e in checked.get("matchExpressions") or ()
        )
        return cls(tuple(sorted(labels.items())), exprs)

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """A kubectl ``-l`` selector: ``app=web,tier!=db,env in (a,b),env notin (c),release,!legacy``."""
        labels: dict[str, str] = {}
        exprs: list[Requirement] = []
        for part in _split_requirements(text):
            req = _parse_requirement(part)
            if req.operator == "In" and len(req.values) == 1 and "=" in part and req.key not in labels:
                labels[req.key] = req.values[0]
            else:
                exprs.append(req)
        return cls(tuple(sorted(labels.items())), tuple(exprs))

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> LabelSelector:
        """The equality selector of a plain map (a Service's ``spec.selector``)."""
        return cls(tuple(sorted(labels.items())))

    @property
    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(k in labels and labels[k] == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.match_expressions
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.match_labels:
            out["matchLabels"] = dict(self.match_labels)
        if self.match_expressions:
            out["matchExpressions"] = [
                {"key": r.key, "operator": r.operator, **({"values": list(r.values)} if r.values else {})}
                for r in self.match_expressions
            ]
        return out

    def __str__(self) -> str:
        """kubectl's rendering: ``app=web,tier in (a,b),!legacy``; ``<none>``-free: empty is ""."""
        parts = [f"{k}={v}" for k, v in self.match_labels] + [str(r) for r in self.match_expressions]
        return ",".join(parts)


_SET_REQUIREMENT = re.compile(r"^(?P<key>[^\s!=()]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_EQUALITY_REQUIREMENT = re.compile(r"^(?P<key>[^\s!=()]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)$")
_PRESENCE_REQUIREMENT = re.compile(r"^(?P<neg>!?)\s*(?P<key>[^\s!=()]+)$")


def _split_requirements(text: str) -> list[str]:
    """Split at commas outside parentheses; blank parts are ignored."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _parse_requirement(part: str) -> Requirement:
    def fail(why: str) -> ValidationError:
        return ValidationError(f"unable to parse requirement {part!r}: {why}")

    if m := _SET_REQUIREMENT.match(part):
        key, values = m["key"], tuple(v.strip() for v in m["values"].split(",") if v.strip())
        if not values:
            raise fail("a set needs at least one value")
        operator = "In" if m["op"] == "in" else "NotIn"
    elif m := _EQUALITY_REQUIREMENT.match(part):
        key, values = m["key"], (m["value"],)
        operator = "NotIn" if m["op"] == "!=" else "In"
    elif m := _PRESENCE_REQUIREMENT.match(part):
        key, values = m["key"], ()
        operator = "DoesNotExist" if m["neg"] else "Exists"
    else:
        raise fail("expected key=value, key!=value, key in (a,b), key notin (a,b), key or !key")
    why = label_key_error(key)
    for value in values:
        why = why or names.label_value_error(value)
    if why is not None:
        raise fail(why)
    return Requirement(key, operator, values)


class LabelChanges(NamedTuple):
    """Parsed ``membrane label`` arguments: labels to set and label keys to remove."""

    assign: dict[str, str]
    remove: set[str]


def parse_label_assignments(args: Iterable[str]) -> LabelChanges:
    """``["app=web", "tier-"]`` -> ({"app": "web"}, {"tier"}); ValidationError on a malformed argument."""
    assign: dict[str, str] = {}
    remove: set[str] = set()
    for arg in args:
        if "=" in arg:
            key, _, value = arg.partition("=")
            what = f"label {arg!r}"
            why = label_key_error(key) if key else "key must be non-empty"
            if why is None:
                why = names.label_value_error(value)
            if why is not None:
                raise ValidationError(f"invalid {what}: {why}")
            if key in assign and assign[key] != value:
                raise ValidationError(f"label {key!r} given twice with different values")
            assign[key] = value
        elif arg.endswith("-") and len(arg) > 1:
            key = arg[:-1]
            why = label_key_error(key)
            if why is not None:
                raise ValidationError(f"invalid label removal {arg!r}: {why}")
            remove.add(key)
        else:
            raise ValidationError(f"invalid label spec {arg!r}: expected key=value to set or key- to remove")
    both = sorted(set(assign) & remove)
    if both:
        raise ValidationError(f"can not both modify and remove label {both[0]!r} in the same command")
    return LabelChanges(assign, remove)


def apply_label_changes(labels: Mapping[str, str], changes: LabelChanges, *, overwrite: bool = False) -> dict[str, str]:
    """The new label map; changing an existing value needs ``overwrite`` (kubectl's ``--overwrite``)."""
    result = dict(labels)
    for key, value in changes.assign.items():
        if not overwrite and key in result and result[key] != value:
            raise ValidationError(f"{key!r} already has a value ({result[key]}), and --overwrite is false")
        result[key] = value
    for key in changes.remove:
        result.pop(key, None)
    return result
