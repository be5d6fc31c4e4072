"""The node routes are read back from the kernel (a dump of every route and link: O(endpoints)) when
the desired routes change, every RECHECK_SECONDS and after a failure, not on every run (issue 16)."""

from __future__ import annotations

import pytest

from membrane.agent.node_routes import RECHECK_SECONDS, NodeRoutes
from membrane.endpoint.routing import RouteSpec


def test_applied_when_changed_periodically_and_after_a_failure() -> None:
    applied: list[dict[str, RouteSpec]] = []
    fail = [False]
    now = [100.0]

    def apply(desired: dict[str, RouteSpec]) -> None:
        if fail[0]:
            raise OSError("netlink")
        applied.append(dict(desired))

    routes = NodeRoutes(apply, clock=lambda: now[0])
    a = {"10.0.2.0/24": RouteSpec("10.0.2.0/24", gateway="192.168.0.3", dev="eth1")}
    routes.sync(a)
    routes.sync(dict(a))  # the same routes: no dump
    assert applied == [a]
    b = {**a, "10.0.3.0/24": RouteSpec("10.0.3.0/24", gateway="192.168.0.4", dev="eth1")}
    routes.sync(b)
    assert applied == [a, b]
    now[0] += RECHECK_SECONDS
    routes.sync(b)  # drift repair
    assert len(applied) == 3
    fail[0] = True
    now[0] += RECHECK_SECONDS
    with pytest.raises(OSError):
        routes.sync(b)
    fail[0] = False
    routes.sync(b)  # the failed run is retried on the next one, whenever it comes
    assert len(applied) == 4
