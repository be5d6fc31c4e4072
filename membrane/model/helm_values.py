"""Helm's value syntax: ``--set``/``--set-string`` strings, values files, and how they merge.

Values are a nested mapping, as Helm keeps them. ``--set a.b=c,d={x,y}`` (Helm's strvals):

- ``,`` separates assignments, ``.`` separates key segments; ``\\,``, ``\\.``, ``\\=`` and ``\\\\`` are
  literal characters;
- ``{a,b}`` is a list (``{}`` the empty list); items are split on unescaped commas;
- with ``--set``, ``true``/``false`` become booleans, integers become ints and ``null`` deletes the
  key; ``--set-string`` keeps every value a string.

``-f`` files merge first, in order, then the ``--set`` values (``merge``: maps merge key by key, any
other value replaces). Pure: no I/O, the caller reads the files.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from membrane.model.errors import ValidationError

Values = dict[str, Any]

_INT = re.compile(r"^[-+]?[0-9]+$")
_ESCAPABLE = {",", ".", "=", "\\", "{", "}", "[", "]"}


def _typed(text: str) -> Any:
    """Helm's typedVal: booleans, null and integers; anything else stays a string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    if _INT.match(text) and not (len(text.lstrip("+-")) > 1 and text.lstrip("+-").startswith("0")):
        return int(text)
    return text


class _Scanner:
    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.pos = 0
        self.where = where

    def fail(self, reason: str) -> ValidationError:
        return ValidationError(f"{self.where}: {reason} (in {self.text!r})")

    def done(self) -> bool:
        return self.pos >= len(self.text)

    def read_until(self, stops: str) -> tuple[str, str]:
        """Characters up to the first unescaped stop character; returns (text, stop or '')."""
        out = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            if ch == "\\" and self.pos < len(self.text) and self.text[self.pos] in _ESCAPABLE:
                out.append(self.text[self.pos])
                self.pos += 1
                continue
            if ch in stops:
                return "".join(out), ch
            out.append(ch)
        return "".join(out), ""


def parse_set(text: str, *, string: bool = False, where: str = "--set") -> Values:
    """One ``--set`` (or ``--set-string``) argument as a nested mapping."""
    scanner = _Scanner(text, where)
    result: Values = {}
    if not text:
        raise scanner.fail("expected key=value")
    while not scanner.done():
        segments = []
        while True:
            segment, stop = scanner.read_until(".=,")
            segments.append(segment)
            if stop != ".":
                break
        if stop != "=":
            raise scanner.fail(f"key {'.'.join(segments)!r} has no value")
        if any(not s for s in segments):
            raise scanner.fail(f"key {'.'.join(segments)!r} has an empty segment")
        value: Any
        if scanner.text.startswith("{", scanner.pos):
            scanner.pos += 1
            items = []
            while True:
                item, stop = scanner.read_until(",}")
                if stop == "":
                    raise scanner.fail(f"list for {'.'.join(segments)!r} is missing its closing '}}'")
                if item or stop == ",":
                    items.append(item)
                if stop == "}":
                    break
            value = [item if string else _typed(item) for item in items]
            after, stop = scanner.read_until(",")
            if after:
                raise scanner.fail(f"unexpected {after!r} after the list for {'.'.join(segments)!r}")
        else:
            raw, _ = scanner.read_until(",")
            value = raw if string else _typed(raw)
        set_path(result, segments, value)
    return result


def set_path(target: Values, segments: list[str], value: Any) -> None:
    """``target[a][b]… = value``, making the maps on the way (a non-map on the way is replaced)."""
    node = target
    for segment in segments[:-1]:
        child = node.get(segment)
        if not isinstance(child, dict):
            child = node[segment] = {}
        node = child
    node[segments[-1]] = value


def merge(base: Values, override: Values) -> Values:
    """A new mapping: ``override`` over ``base``; maps merge recursively, a ``None`` deletes the key."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_values_file(text: str, source: str) -> Values:
    """A ``-f values.yaml`` document (empty: no values)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationError(f"{source}: invalid YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ValidationError(f"{source}: expected a mapping of values at the top level, got {type(doc).__name__}")
    for key in doc:
        if not isinstance(key, str):
            raise ValidationError(f"{source}: key {key!r} is not a string")
    return doc


def flatten(values: Values, prefix: str = "") -> dict[str, Any]:
    """Dotted leaf keys: ``{"hubble": {"relay": {"enabled": True}}}`` → ``{"hubble.relay.enabled": True}``.

    Lists are leaves; an empty map is kept as a leaf (``{}``) so that it is seen, not lost.
    """
    out: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def combine(files: list[Values], sets: list[Values], base: Values | None = None) -> Values:
    """Helm's order: the base (reused values), then each ``-f`` file, then each ``--set``."""
    out = copy.deepcopy(base or {})
    for layer in (*files, *sets):
        out = merge(out, layer)
    return out


def to_yaml(values: Values) -> str:
    return yaml.safe_dump(values, default_flow_style=False, sort_keys=True)
