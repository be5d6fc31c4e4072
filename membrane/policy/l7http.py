"""HTTP L7 rules (reference §2.7): does a request match, and which header changes does it get.

A request is allowed if any rule matches all its non-empty fields: ``method``, ``path`` (the request
target, as Envoy's ``:path``) and ``host`` are regexes matched against the whole value; ``headers``
entries are ``Name`` (present) or ``Name: value`` (exact); ``headerMatches`` entries check a header's
value (or presence) and on mismatch either fail the rule (no ``mismatch``) or apply their action:
``LOG`` (allow), ``ADD`` (add the value), ``DELETE`` (remove the header), ``REPLACE`` (set the value).
``secret`` values come from ``secret_value(namespace, name)``; an unknown secret never matches.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Headers = list[tuple[str, str]]
SecretValue = Callable[[str, str], str | None]


@dataclass(frozen=True)
class HTTPRule:
    method: re.Pattern[str] | None = None
    path: re.Pattern[str] | None = None
    host: re.Pattern[str] | None = None
    headers: tuple[tuple[str, str | None], ...] = ()
    header_matches: tuple[dict[str, Any], ...] = field(default=())

    @classmethod
    def compile(cls, data: dict[str, Any] | str) -> HTTPRule:
        d = json.loads(data) if isinstance(data, str) else data
        hdrs = []
        for h in d.get("headers") or []:
            name, sep, value = h.partition(":")
            hdrs.append((name.strip().lower(), value.strip() if sep else None))
        return cls(*(re.compile(d[k]) if d.get(k) else None for k in ("method", "path", "host")),
                   headers=tuple(hdrs), header_matches=tuple(d.get("headerMatches") or ()))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    headers: Headers  # the request's headers after mismatch actions
    logged: tuple[str, ...] = ()  # headerMatches mismatches with action LOG


def _get(headers: Headers, name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name]


def _match_one(rule: HTTPRule, method: str, target: str, headers: Headers,
               secret_value: SecretValue) -> Decision | None:
    if rule.method is not None and not rule.method.fullmatch(method):
        return None
    if rule.path is not None and not rule.path.fullmatch(target):
        return None
    if rule.host is not None:
        host = (_get(headers, "host") or [""])[0]
        if not rule.host.fullmatch(host):
            return None
    for name, value in rule.headers:
        have = _get(headers, name)
        if not have or (value is not None and value not in have):
            return None
    out = list(headers)
    logged = []
    for hm in rule.header_matches:
        name = str(hm.get("name", "")).lower()
        want = hm.get("value")
        secret = hm.get("secret")
        if secret:
            want = secret_value(secret.get("namespace") or "", secret.get("name") or "")
            if want is None:
                return None
        have = _get(out, name)
        ok = bool(have) if want in (None, "") else want in have
        if ok:
            continue
        action = hm.get("mismatch") or ""
        if action == "LOG":
            logged.append(name)
        elif action == "ADD" and want is not None:
            out.append((hm["name"], want))
        elif action == "DELETE":
            out = [(k, v) for k, v in out if k.lower() != name]
        elif action == "REPLACE" and want is not None:
            out = [(k, v) for k, v in out if k.lower() != name] + [(hm["name"], want)]
        else:
            return None
    return Decision(True, out, tuple(logged))


def decide(rules: Sequence[HTTPRule] | None, method: str, target: str, headers: Headers,
           secret_value: SecretValue = lambda _ns, _n: None) -> Decision:
    """None = allow all; otherwise the first matching rule decides (its header actions apply)."""
    if rules is None:
        return Decision(True, list(headers))
    for rule in rules:
        d = _match_one(rule, method, target, headers, secret_value)
        if d is not None:
            return d
    return Decision(False, list(headers))
