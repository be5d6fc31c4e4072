"""kubectl's other output formats for ``membrane get``: ``-o name``, ``-o jsonpath=TEMPLATE``,
``-o custom-columns=SPEC``, and ``--sort-by=JSONPATH``.

JSONPath expressions are evaluated by jsonpath-ng (its extended parser, for ``[?(@.x=="y")]``
filters); this module only adds kubectl's template layer around them: ``{expr}`` blocks among
literal text, ``{"\\n"}`` string literals, ``{range EXPR}…{end}`` loops, ``{.a}`` relative to the
current object. As in kubectl (``--allow-missing-template-keys`` defaults to true) a missing key
prints nothing, several results are joined by a space, maps and lists print as JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
from jsonpath_ng.ext import parse

from membrane.cli.arguments import CLIError
from membrane.cli.tabwriter import kubectl_table

FIXED_OUTPUTS = ("wide", "yaml", "json", "name")
_BLOCK = re.compile(r"\{((?:[^{}\"]|\"(?:[^\"\\]|\\.)*\")*)\}")


def check_output(value: str) -> str:
    """argparse ``type=`` for ``-o``: one of kubectl's formats, ``jsonpath=`` / ``custom-columns=`` with text."""
    for prefix in ("jsonpath=", "custom-columns="):
        if value.startswith(prefix) and value != prefix:
            return value
    if value in FIXED_OUTPUTS:
        return value
    allowed = ", ".join([*FIXED_OUTPUTS, "jsonpath=...", "custom-columns=..."])
    raise CLIError(f'unable to match a printer suitable for the output format "{value}", allowed formats are: {allowed}')


def _compile(expr: str) -> Any:
    expr = expr.strip()
    if expr.startswith("@"):
        expr = expr[1:]
    text = "$" if expr in ("", ".") else "$" + (expr if expr.startswith(("[", ".")) else "." + expr)
    try:
        return parse(text)
    except (JsonPathLexerError, JsonPathParserError, Exception) as exc:  # jsonpath-ng raises plain Exception too
        raise CLIError(f"error parsing jsonpath {expr!r}: {exc}") from None


def values(expr: str, data: Any) -> list[Any]:
    """What a JSONPath expression (``.metadata.name``, ``{.spec.ports[*].port}``) finds in ``data``."""
    expr = expr.strip()
    if expr.startswith("{") and expr.endswith("}"):
        expr = expr[1:-1]
    return [m.value for m in _compile(expr).find(data)]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _tokens(template: str) -> list[tuple[str, str]]:
    """("text", literal) and ("expr", inside-braces) pieces of a template."""
    out: list[tuple[str, str]] = []
    pos = 0
    for m in _BLOCK.finditer(template):
        if m.start() > pos:
            out.append(("text", template[pos:m.start()]))
        out.append(("expr", m.group(1).strip()))
        pos = m.end()
    if "{" in template[pos:] or "}" in template[pos:]:
        raise CLIError(f"error parsing jsonpath {template}: unclosed action")
    if pos < len(template):
        out.append(("text", template[pos:]))
    return out


def _render(tokens: list[tuple[str, str]], data: Any) -> str:
    out: list[str] = []
    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "text":
            out.append(value)
        elif value.startswith('"') and value.endswith('"') and len(value) >= 2:
            out.append(json.loads(value, strict=False))
        elif value.startswith("range "):
            depth, j = 1, i + 1
            while j < len(tokens) and depth:
                if tokens[j][0] == "expr" and tokens[j][1].startswith("range "):
                    depth += 1
                elif tokens[j] == ("expr", "end"):
                    depth -= 1
                j += 1
            if depth:
                raise CLIError("error parsing jsonpath: range without end")
            body = tokens[i + 1:j - 1]
            for item in values(value[len("range "):], data):
                out.append(_render(body, item))
            i = j
            continue
        elif value == "end":
            raise CLIError("error parsing jsonpath: end without range")
        else:
            out.append(" ".join(_text(v) for v in values(value, data)))
        i += 1
    return "".join(out)


def jsonpath_output(template: str, data: Any) -> str:
    """kubectl ``-o jsonpath=TEMPLATE`` applied to one object or a List."""
    return _render(_tokens(template), data)


def custom_columns(spec: str, objs: list[dict[str, Any]], headers: bool = True) -> str:
    """kubectl ``-o custom-columns=NAME:.path,...``: ``<none>`` where nothing is found."""
    columns = []
    for part in spec.split(","):
        header, sep, expr = part.partition(":")
        if not sep or not header or not expr:
            raise CLIError(f"unexpected custom-columns spec: {part}, expected <header>:<json-path-expr>")
        columns.append((header, expr))
    rows = [[h for h, _ in columns]] if headers else []
    for obj in objs:
        rows.append([",".join(_text(v) for v in values(e, obj)) or "<none>" for _, e in columns])
    return kubectl_table(rows) if rows else ""


def sort_by(objs: list[dict[str, Any]], expr: str) -> list[dict[str, Any]]:
    """kubectl ``--sort-by``: by the first value found; numbers numerically, missing values first."""
    def key(obj: dict[str, Any]) -> tuple[int, float, str]:
        found = values(expr, obj)
        if not found:
            return (0, 0.0, "")
        v = found[0]
        if isinstance(v, int | float) and not isinstance(v, bool):
            return (1, float(v), "")
        return (2, 0.0, _text(v))
    return sorted(objs, key=key)


def name_lines(refs: list[str]) -> str:
    return "\n".join(refs)
