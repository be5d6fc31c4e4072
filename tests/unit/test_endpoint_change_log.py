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


def test_touch_names_an_endpoint_changed_in_place_and_ignores_unknown_ones() -> None:
    table = EndpointTable()
    table.put(_ep(1))
    table.put(_ep(2))
    _keys, v = table.changed_since(0)
    table.touch(("c1", "eth0"))  # its identity changed
    table.touch(("c9", "eth0"))
    assert table.changed_since(v) == ([("c1", "eth0")], v + 1)


def test_lookups_by_id_and_ip_follow_puts_replacements_and_removals() -> None:
    table = EndpointTable()
    for i in (1, 2, 3):
        table.put(_ep(i))
    assert table.by_id(2) is table.get("c2", "eth0") and table.by_ip("10.1.0.3") is table.get("c3", "eth0")
    again = Endpoint(7, "c2", "eth0", "", "default", "p2", "10.1.0.7", "lxc7", 7, "", "")  # same key, new ID/IP
    table.put(again)
    assert table.by_id(2) is None and table.by_ip("10.1.0.2") is None
    assert table.by_id(7) is again and table.by_ip("10.1.0.7") is again
    table.remove("c1", "eth0")
    assert table.by_id(1) is None and table.by_ip("10.1.0.1") is None
    assert table.next_id() == 1 and table.next_id(exclude={1}) == 2
    assert all(table.by_id(ep.id) is ep and table.by_ip(ep.ipv4) is ep for ep in table.list())
