"""FQDN selectors (``toFQDNs`` and L7 ``dns`` rules): ``matchName`` / ``matchPattern`` syntax and matching.

Names and patterns are case-insensitive and implicitly end with ``.``. In a pattern, ``*`` stands for
any run of name characters within one label, and a leading ``**.`` for one or more whole labels;
``*`` alone matches every name.
"""

from __future__ import annotations

import re
from typing import Any

from membrane.model.fields import Fields, invalid

MAX_LENGTH = 255
_NAME_CHARS = re.compile(r"^[-a-zA-Z0-9_.]+$")
_PATTERN_CHARS = re.compile(r"^[-a-zA-Z0-9_.*]+$")
_LABEL_RUN = "[-a-zA-Z0-9_]*"
FQDN_SELECTOR_FIELDS = ("matchName", "matchPattern")


def _fqdn(text: str) -> str:
    text = text.lower()
    return text if text.endswith(".") else text + "."


def pattern_regex(pattern: str) -> str:
    """The anchored regular expression a ``matchPattern`` stands for (Cilium's conversion)."""
    pattern = _fqdn(pattern.strip())
    if pattern in ("*.", "**."):
        return r"^[-a-zA-Z0-9_.]*$"
    prefix = ""
    if pattern.startswith("**."):
        prefix = r"([-a-zA-Z0-9_]+([.][-a-zA-Z0-9_]+)*)[.]"
        pattern = pattern[3:]
    body = "".join(_LABEL_RUN if c == "*" else "[.]" if c == "." else re.escape(c) for c in pattern)
    return f"^{prefix}{body}$"


def matches(selector: dict[str, str], name: str) -> bool:
    """Whether a DNS name is selected by a validated ``{matchName|matchPattern}`` selector."""
    fqdn = _fqdn(name)
    if selector.get("matchName"):
        return fqdn == _fqdn(selector["matchName"])
    return re.match(pattern_regex(selector.get("matchPattern", "")), fqdn) is not None


def check_fqdn_selector(data: Any, path: str) -> dict[str, Any]:
    """Exactly one of ``matchName`` (``[-a-zA-Z0-9_.]``) or ``matchPattern`` (also ``*``), ≤ 255 chars."""
    f = Fields(data, path, FQDN_SELECTOR_FIELDS)
    name = f.string("matchName")
    pattern = f.string("matchPattern")
    if name and pattern:
        raise invalid(path, data, "only one of matchName or matchPattern is allowed in an FQDN selector")
    if not name and not pattern:
        raise invalid(path, data, "one of matchName or matchPattern must be set")
    key, value, chars = ("matchName", name, _NAME_CHARS) if name else ("matchPattern", pattern, _PATTERN_CHARS)
    assert value is not None
    if len(value) > MAX_LENGTH:
        raise invalid(f.at(key), value, f"must be no more than {MAX_LENGTH} characters")
    if not chars.match(value):
        allowed = "a-z, A-Z, 0-9, '-', '_' and '.'" + (" and '*'" if key == "matchPattern" else "")
        raise invalid(f.at(key), value, f"may only contain {allowed}")
    return f.data


def selector_key(selector: dict[str, str]) -> str:
    """A validated selector's canonical text: lower case, no trailing dot (``*.cilium.io``).

    A ``matchName`` and a star-free ``matchPattern`` of the same name select the same names, so they
    share a key; the key is what names the selector in identity labels (``fqdn:<key>``).
    """
    text = (selector.get("matchName") or selector.get("matchPattern") or "").strip().lower()
    return text[:-1] if text.endswith(".") and text != "." else text


def key_matches(key: str, name: str) -> bool:
    """Whether a DNS name is selected by the selector with canonical text ``key``."""
    if "*" not in key:
        return _fqdn(name) == _fqdn(key)
    return _compiled(key).fullmatch(_fqdn(name)) is not None


_REGEX_CACHE: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    found = _REGEX_CACHE.get(pattern)
    if found is None:
        if len(_REGEX_CACHE) > 4096:
            _REGEX_CACHE.clear()
        found = _REGEX_CACHE[pattern] = re.compile(pattern_regex(pattern))
    return found
