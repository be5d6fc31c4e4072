"""Label maps and label selectors as kubectl prints them (apimachinery's labels.Selector.String)."""

from __future__ import annotations

from typing import Any


def format_labels(labels: Any) -> str:
    """labels.FormatLabels: ``k1=v1,k2=v2`` sorted by key, ``<none>`` when empty."""
    if not isinstance(labels, dict) or not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def _requirement(key: str, operator: str, values: list[str]) -> str:
    if operator == "Exists":
        return key
    if operator == "DoesNotExist":
        return f"!{key}"
    joined = ",".join(sorted(values)) if len(values) > 1 else "".join(values)
    if operator == "In":
        return f"{key} in ({joined})"
    if operator == "NotIn":
        return f"{key} notin ({joined})"
    raise ValueError(f"matchExpressions: operator {operator!r} is not In, NotIn, Exists or DoesNotExist")


def selector_string(selector: Any) -> str:
    """metav1.LabelSelectorAsSelector(...).String(): requirements sorted by key, ``""`` when empty.

    ``matchLabels`` become ``key=value``; ``matchExpressions`` ``key in (a,b)``, ``key notin (a)``,
    ``key``, ``!key``. Raises ValueError for an unknown operator.
    """
    if not isinstance(selector, dict):
        return ""
    requirements: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        requirements.append((key, f"{key}={value}"))
    for expr in selector.get("matchExpressions") or []:
        key = str(expr.get("key", ""))
        values = [str(v) for v in expr.get("values") or []]
        requirements.append((key, _requirement(key, str(expr.get("operator", "")), values)))
    requirements.sort(key=lambda item: item[0])  # stable: equal keys keep their order
    return ",".join(text for _, text in requirements)


def format_label_selector(selector: Any) -> str:
    """metav1.FormatLabelSelector: the selector string, ``<none>`` when empty, ``<error>`` when invalid."""
    try:
        text = selector_string(selector)
    except ValueError:
        return "<error>"
    return text or "<none>"
