"""Times for ``membrane observe --since/--until``: RFC 3339 (and a few shorter layouts) or a relative
Go-style duration (``5m``, ``1h30m``, ``90s``, ``250ms``) meaning that long before now, as hubble takes them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_LAYOUTS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d")
_FRACTION = re.compile(r"\.(\d+)")


def parse_duration(text: str) -> timedelta:
    """A Go ``time.ParseDuration`` string (``1h2m3.5s``; a bare ``0`` is zero) as a timedelta."""
    s = text.strip()
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    if s == "0":
        return timedelta(0)
    pos, seconds = 0, 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise ValueError(f"invalid duration {text!r}")
        seconds += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    return timedelta(seconds=sign * seconds)


def _parse_rfc3339(text: str) -> datetime | None:
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    # Python keeps microseconds: cut nanosecond fractions to six digits
    s = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), s, count=1)
    try:
        value = datetime.fromisoformat(s)
    except ValueError:
        value = None
    if value is None:
        for layout in _LAYOUTS:
            try:
                value = datetime.strptime(s, layout)
                break
            except ValueError:
                continue
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """``2025-01-10T09:15:02Z`` (any RFC 3339), ``2025-01-10 09:15``, or ``5m`` (= now - 5 minutes)."""
    absolute = _parse_rfc3339(text)
    if absolute is not None:
        return absolute.astimezone(UTC)
    try:
        delta = parse_duration(text)
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}: expected RFC 3339 (2006-01-02T15:04:05Z07:00) or a duration like 5m, 1h30m"
        ) from None
    return (now or datetime.now(UTC)) - delta


def to_rfc3339(value: datetime) -> str:
    """The protobuf JSON form of a Timestamp (UTC, ``Z``)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
