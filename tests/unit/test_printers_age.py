"""kubectl's HumanDuration, Go's Duration.String and the tabwriter alignment rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from membrane.cli.age import age_since, format_age, go_duration, time_since
from membrane.cli.tabwriter import kubectl_table, tabwrite

MIN, HOUR, DAY = 60, 3600, 86400


@pytest.mark.parametrize(
    "seconds,text",
    [
        (-5, "<invalid>"), (-2, "<invalid>"), (-1.9, "0s"), (-1, "0s"), (0, "0s"), (0.9, "0s"),
        (45, "45s"), (119, "119s"), (119.99, "119s"),
        (120, "2m"), (150, "2m30s"), (9 * MIN + 59, "9m59s"),
        (10 * MIN, "10m"), (10 * MIN + 59, "10m"), (3 * HOUR - 1, "179m"),
        (3 * HOUR, "3h"), (3 * HOUR + 30 * MIN + 59, "3h30m"), (8 * HOUR - 1, "7h59m"),
        (8 * HOUR, "8h"), (47 * HOUR + 59 * MIN, "47h"),
        (48 * HOUR, "2d"), (2 * DAY + 5 * HOUR + 59 * MIN, "2d5h"), (8 * DAY - 1, "7d23h"),
        (8 * DAY, "8d"), (729 * DAY, "729d"),
        (730 * DAY, "2y"), (731 * DAY + 23 * HOUR, "2y1d"), (8 * 365 * DAY - 1, "7y364d"),
        (8 * 365 * DAY, "8y"), (20 * 365 * DAY + 100 * DAY, "20y"),
    ],
)
def test_format_age_follows_human_duration(seconds, text):
    assert format_age(seconds) == text


@pytest.mark.parametrize("seconds,text", [(0, "0s"), (45, "45s"), (60, "1m0s"), (150, "2m30s"),
                                          (3600, "1h0m0s"), (3723, "1h2m3s"), (90000, "25h0m0s"), (-61, "-1m1s")])
def test_go_duration(seconds, text):
    assert go_duration(seconds) == text


NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def test_age_since_and_time_since():
    assert age_since("2024-05-01T11:57:30Z", NOW) == "2m30s"
    assert age_since("2024-05-01T12:00:05Z", NOW) == "<invalid>"
    assert age_since(None, NOW) == "<unknown>"
    assert age_since("yesterday", NOW) == "<unknown>"
    assert age_since(datetime(2024, 4, 28, 12, 0, 0), NOW) == "3d"  # naive datetimes are UTC
    assert time_since("2024-05-01T11:58:29.6Z", NOW) == "1m30s ago"
    assert time_since("0001-01-01T00:00:00Z", NOW) == "never"
    assert time_since("", NOW) == "never"


def test_kubectl_table_pads_all_but_last_column():
    table = kubectl_table([["NAME", "READY", "AGE"], ["web-1", "1/1", "5s"], ["a", "0/1", "10m"]])
    assert table == (
        "NAME    READY   AGE\n"
        "web-1   1/1     5s\n"
        "a       0/1     10m"
    )


def test_kubectl_minimum_column_width_is_six():
    assert kubectl_table([["IP", "X"], ["", "y"]]) == "IP    X\n      y"


def test_kubectl_cells_are_cut_at_newlines():
    assert kubectl_table([["NAME", "MSG"], ["a", "line1\nline2"]]) == "NAME   MSG\na      line1..."


def test_tabwriter_blocks_end_at_lines_without_the_column():
    text = "a:\tx\nlonger-key:\ty\nplain line\nb:\tz"
    assert tabwrite(text, minwidth=2, padding=3) == (
        "a:            x\n"
        "longer-key:   y\n"
        "plain line\n"
        "b:   z"
    )


def test_tabwriter_trailing_tab_pads_last_cell():
    assert tabwrite("ab\tc\t\nabcd\te\t", minwidth=0, padding=1) == "ab   c \nabcd e "
