"""--since/--until parsing: RFC 3339 and relative Go durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from membrane.cli.observe_time import parse_duration, parse_time, to_rfc3339

NOW = datetime(2025, 1, 10, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("5m", timedelta(minutes=5)), ("1h30m", timedelta(hours=1, minutes=30)), ("90s", timedelta(seconds=90)),
    ("250ms", timedelta(milliseconds=250)), ("1.5h", timedelta(minutes=90)), ("0", timedelta(0)),
    ("2h3m4s", timedelta(hours=2, minutes=3, seconds=4)), ("10us", timedelta(microseconds=10)),
])
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "m", "5x", "1h 2m", "abc"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("5m", NOW - timedelta(minutes=5)),
    ("2025-01-10T09:15:02Z", datetime(2025, 1, 10, 9, 15, 2, tzinfo=UTC)),
    ("2025-01-10T09:15:02.123456789Z", datetime(2025, 1, 10, 9, 15, 2, 123456, tzinfo=UTC)),
    ("2025-01-10T10:15:02+01:00", datetime(2025, 1, 10, 9, 15, 2, tzinfo=UTC)),
    ("2025-01-10 09:15", datetime(2025, 1, 10, 9, 15, tzinfo=UTC)),
    ("2025-01-10", datetime(2025, 1, 10, tzinfo=UTC)),
])
def test_times(text: str, expected: datetime) -> None:
    assert parse_time(text, NOW) == expected


def test_bad_time() -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_time("yesterday", NOW)


def test_rfc3339_output() -> None:
    assert to_rfc3339(datetime(2025, 1, 10, 9, 15, 2, 5, tzinfo=UTC)) == "2025-01-10T09:15:02.000005Z"
