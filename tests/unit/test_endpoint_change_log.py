"""The endpoint table's change log (EndpointTable.changed_since): which endpoints were put or removed
since a version, so a controller looks at those only; None once the log no longer reaches back."""

from __future__ import annotations

from membrane.endpoint.model import LOG_SLACK, Endpoint, EndpointTable


def _ep(i: int) -> Endpoint:
    return Endpoint(i, f"c{i}", "eth0", "", "default", f"p{i}", f"10.1.0.{i}", f"lxc{i}", i, "", "")


def test_changed_since_names_each_changed_endpoint_once_newest_first() -> None:
    table = EndpointTable()
    table.put(_ep(1))
    keys, v1 = table.changed_since(0)
    assert keys == [("c1", "eth0")]
    table.put(_ep(2))
    table.put(_ep(3))
    table.remove("c1", "eth0")
    table.remove("c9", "eth0")  # unknown: not a change
    keys, v2 = table.changed_since(v1)
    assert keys == [("c1", "eth0"), ("c3", "eth0"), ("c2", "eth0")]
    assert table.changed_since(v2) == ([], v2)


def test_an_old_version_beyond_the_trimmed_log_asks_for_a_full_look() -> None:
    table = EndpointTable()
    table.put(_ep(1))
    _keys, v = table.changed_since(0)
    for i in range(2, 2 * LOG_SLACK + 10):  # endpoints come and go: the log forgets the oldest removals
        table.put(_ep(i))
        table.remove(f"c{i}", "eth0")
    keys, now = table.changed_since(v)
    assert keys is None and now == table.version
    assert len(table._log) <= 2 * len(table) + LOG_SLACK
    assert table.changed_since(now) == ([], now)
