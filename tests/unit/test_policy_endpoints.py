"""Which endpoints a policy run looks at (issue 16): the changed ones, those of identities whose policy
changed, those left behind; every endpoint on the first run, periodically, when the change log no
longer reaches back and after a failed run."""

from __future__ import annotations

import threading

from membrane.agent.policy_endpoints import FULL_PASS_SECONDS, PolicyEndpoints
from membrane.endpoint.model import LOG_SLACK, Endpoint, EndpointTable


class Net:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.endpoints = EndpointTable()


def _ep(i: int, identity: int = 300) -> Endpoint:
    return Endpoint(i, f"c{i}", "eth0", "", "default", f"p{i}", f"10.1.0.{i}", f"lxc{i}", i, "", "", identity=identity)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _resolve_all(eps: PolicyEndpoints, endpoints: dict[int, Endpoint]) -> None:
    for ep in endpoints.values():
        eps.resolved(ep)


def test_after_the_first_run_only_changed_endpoints_are_looked_at() -> None:
    net, clock = Net(), Clock()
    for i in range(1, 101):
        net.endpoints.put(_ep(i, identity=300 + i % 3))
    eps = PolicyEndpoints(net, clock)  # type: ignore[arg-type]
    endpoints, looked = eps.select((), ())
    assert len(endpoints) == 100 and looked == set(range(1, 101))  # the first run: all
    _resolve_all(eps, endpoints)
    assert eps.select((), ()) == ({}, set())  # nothing changed: nothing looked at
    net.endpoints.put(_ep(101))  # a new pod
    ep7 = net.endpoints.get("c7", "eth0")
    assert ep7 is not None
    ep7.identity = 999
    net.endpoints.touch(ep7.key)  # its identity changed (NodeNetwork.set_identity)
    net.endpoints.remove("c8", "eth0")  # a pod gone
    endpoints, looked = eps.select((), {50})  # 50: left behind by a failed run
    assert set(endpoints) == {7, 50, 101} and looked == {7, 8, 50, 101}  # 8 looked at, gone
    _resolve_all(eps, endpoints)
    eps.forget(8)
    # a policy change for identity 302: the endpoints resolved for it, and no others
    endpoints, looked = eps.select({302}, ())
    assert set(endpoints) == {i for i in range(1, 101) if i % 3 == 2 and i != 8}
    assert eps.select({999}, ())[0].keys() == {7}  # 7 moved to its new identity


def test_every_endpoint_periodically_when_asked_after_a_failure_and_beyond_the_log() -> None:
    net, clock = Net(), Clock()
    for i in range(1, 4):
        net.endpoints.put(_ep(i))
    eps = PolicyEndpoints(net, clock)  # type: ignore[arg-type]
    _resolve_all(eps, eps.select((), ())[0])
    assert eps.select((), ()) == ({}, set())
    assert set(eps.select((), (), everything=True)[0]) == {1, 2, 3}  # a full run (enforcement mode changed)
    eps.everything()  # a run failed half way
    assert set(eps.select((), ())[0]) == {1, 2, 3}
    clock.now += FULL_PASS_SECONDS
    assert set(eps.select((), ())[0]) == {1, 2, 3}
    assert eps.select((), ()) == ({}, set())
    for i in range(10, 10 + 2 * LOG_SLACK + 10):  # pods come and go: the log forgets the oldest changes
        net.endpoints.put(_ep(i))
        net.endpoints.remove(f"c{i}", "eth0")
    endpoints, looked = eps.select((), ())
    assert set(endpoints) == {1, 2, 3} and looked == {1, 2, 3}


def test_endpoints_without_an_identity_are_looked_at_but_not_resolved() -> None:
    net = Net()
    eps = PolicyEndpoints(net)  # type: ignore[arg-type]
    eps.select((), ())
    net.endpoints.put(_ep(1, identity=0))  # waiting for its identity
    endpoints, looked = eps.select((), ())
    assert endpoints == {} and looked == {1}
