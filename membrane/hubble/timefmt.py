"""Timestamps as `hubble observe` prints them: Go's StampMilli by default, or a --time-format layout."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any

# hubble's --time-format names (Go layouts) and how many fraction digits they print
TIME_FORMATS = {"StampMilli": 3, "RFC3339": 0, "RFC3339Milli": 3, "RFC3339Micro": 6, "RFC3339Nano": 9,
                "RFC1123Z": 0, "YearMonthDay": 0, "YearMonthDayHour": 0, "YearMonthDayHourMinute": 0,
                "DateTime": 0}


def _offset(t: datetime) -> str:
    off = t.strftime("%z")
    return "Z" if off in ("+0000", "") else f"{off[:3]}:{off[3:]}"


def timestamp(flow: Any, tz: tzinfo | None = UTC, time_format: str = "StampMilli") -> str:
    """Go's StampMilli (`Jan _2 15:04:05.000`) or another of hubble's --time-format layouts
    (TIME_FORMATS); `tz=None` means local time."""
    ns = flow.time.ToNanoseconds()
    t = datetime.fromtimestamp(ns // 1_000_000_000, tz=tz or UTC)
    if tz is None:
        t = t.astimezone()
    if time_format == "StampMilli":
        return f"{t:%b} {t.day:>2} {t:%H:%M:%S}.{(ns // 1_000_000) % 1000:03d}"
    if time_format.startswith("RFC3339"):
        digits = TIME_FORMATS[time_format]
        frac = f".{ns % 1_000_000_000:09d}"[: digits + 1] if digits else ""
        if time_format == "RFC3339Nano":
            frac = frac.rstrip("0").rstrip(".")  # Go's Nano layout trims trailing zeros
        return f"{t:%Y-%m-%dT%H:%M:%S}{frac}{_offset(t)}"
    layouts = {"RFC1123Z": "%a, %d %b %Y %H:%M:%S %z", "YearMonthDay": "%Y-%m-%d",
               "YearMonthDayHour": "%Y-%m-%dT%H%z", "YearMonthDayHourMinute": "%Y-%m-%dT%H:%M%z",
               "DateTime": "%Y-%m-%d %H:%M:%S"}
    if time_format not in layouts:
        raise ValueError(f"unknown time format {time_format!r} (one of {', '.join(TIME_FORMATS)})")
    return t.strftime(layouts[time_format])
