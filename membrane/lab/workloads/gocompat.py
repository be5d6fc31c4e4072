"""Go standard-library behaviours the imitated images show: durations, header keys, time.Now() text."""

from __future__ import annotations

import re
import time

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_TOKEN = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_START = time.monotonic()


def parse_duration(text: str) -> float:
    """Seconds from a Go duration such as ``300ms``, ``1.5s``, ``1h2m``; ValueError like time.ParseDuration."""
    value = text.strip()
    sign = -1.0 if value.startswith("-") else 1.0
    body = value.lstrip("+-")
    if body == "0":
        return 0.0
    total, pos = 0.0, 0
    for match in _PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not body or pos != len(body):
        raise ValueError(f'time: invalid duration "{text}"')
    return sign * total


def canonical_header_key(key: str) -> str:
    """textproto.CanonicalMIMEHeaderKey: ``x-forwarded-for`` -> ``X-Forwarded-For``; odd keys are left alone."""
    if not key or any(ch not in _TOKEN for ch in key):
        return key
    return "-".join(part[:1].upper() + part[1:].lower() for part in key.split("-"))


def now_text() -> str:
    """time.Now().String(): ``2024-05-01 10:00:00.123456789 +0000 UTC m=+1.234567890``."""
    now_ns = time.time_ns()
    local = time.localtime(now_ns // 1_000_000_000)
    frac = f"{now_ns % 1_000_000_000:09d}".rstrip("0")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", local) + (f".{frac}" if frac else "")
    offset = time.strftime("%z", local)
    zone = local.tm_zone or "UTC"
    return f"{stamp} {offset} {zone} m=+{time.monotonic() - _START:.9f}"
