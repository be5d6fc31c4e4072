"""Durations and timestamps as kubectl and cilium-dbg print them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def format_age(seconds: float) -> str:
    """kubectl's AGE: k8s.io/apimachinery/pkg/util/duration.HumanDuration, rule for rule.

    ``<invalid>`` below -1s (clock skew beyond tolerance), ``0s`` for -1s; then seconds up to 119s,
    ``XmYs`` below 10m, minutes below 3h, ``XhYm`` below 8h, hours below 48h, ``XdYh`` below 8d, days
    below 2y, ``XyYd`` below 8y, then years. Zero remainders are dropped (``3m``, ``5h``, ``4d``, ``3y``).
    """
    s = int(seconds)  # Go's int() truncates toward zero, like Python's
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years, days = hours // 24 // 365, (hours // 24) % 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def go_duration(seconds: int) -> str:
    """Go's ``time.Duration.String()`` for whole seconds: ``0s``, ``45s``, ``2m0s``, ``1h2m3s``."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"


def parse_timestamp(value: Any) -> datetime | None:
    """An RFC 3339 string (``2024-05-01T10:00:00Z``) or datetime as an aware datetime; None if absent/bad."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _aware(now: datetime) -> datetime:
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def age_since(timestamp: Any, now: datetime) -> str:
    """kubectl's translateTimestampSince: ``<unknown>`` without a timestamp, else format_age."""
    parsed = parse_timestamp(timestamp)
    if parsed is None:
        return "<unknown>"
    return format_age((_aware(now) - parsed).total_seconds())


def time_since(timestamp: Any, now: datetime) -> str:
    """cilium's timeSince: ``never`` without a timestamp, else the Go duration truncated to seconds + `` ago``.

    Go's zero time (``0001-01-01T00:00:00Z``, what Cilium's API sends for "never") also reads ``never``.
    """
    parsed = parse_timestamp(timestamp)
    if parsed is None or parsed.year == 1:
        return "never"
    return go_duration(int((_aware(now) - parsed).total_seconds())) + " ago"
