"""hubble's --time-format layouts for flow timestamps."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest

from membrane.hubble.proto.flow import flow_pb2
from membrane.hubble.render import compact
from membrane.hubble.timefmt import TIME_FORMATS, timestamp

NS = 1_700_000_000_123_450_000  # 2023-11-14T22:13:20.12345Z


def _flow() -> flow_pb2.Flow:
    f = flow_pb2.Flow()
    f.time.FromNanoseconds(NS)
    return f


@pytest.mark.parametrize(("fmt", "text"), [
    ("StampMilli", "Nov 14 22:13:20.123"),
    ("RFC3339", "2023-11-14T22:13:20Z"),
    ("RFC3339Milli", "2023-11-14T22:13:20.123Z"),
    ("RFC3339Micro", "2023-11-14T22:13:20.123450Z"),
    ("RFC3339Nano", "2023-11-14T22:13:20.12345Z"),
    ("RFC1123Z", "Tue, 14 Nov 2023 22:13:20 +0000"),
    ("YearMonthDay", "2023-11-14"),
    ("DateTime", "2023-11-14 22:13:20"),
])
def test_layouts(fmt: str, text: str) -> None:
    assert timestamp(_flow(), time_format=fmt) == text


def test_offsets_and_unknown_layouts() -> None:
    cet = timezone(timedelta(hours=1))
    assert timestamp(_flow(), cet, "RFC3339") == "2023-11-14T23:13:20+01:00"
    with pytest.raises(ValueError, match="unknown time format 'Kitchen'"):
        timestamp(_flow(), time_format="Kitchen")
    assert set(TIME_FORMATS) >= {"StampMilli", "RFC3339Nano"}


def test_compact_uses_the_layout() -> None:
    assert compact(_flow(), time_format="RFC3339").startswith("2023-11-14T22:13:20Z: ")
