"""Only pod changes that involve a hostPort wake the agent's load-balancer controller."""

from __future__ import annotations

from membrane.agent.lb_sync import LBSync
from membrane.store.kv import KV
from membrane.store.watch import WatchEvent

PLAIN = b'{"spec":{"containers":[{"name":"c","ports":[{"containerPort":80}]}]}}'
HOSTPORT = b'{"spec":{"containers":[{"name":"c","ports":[{"containerPort":80,"hostPort":8088}]}]}}'


def _kv(value: bytes) -> KV:
    return KV("/membrane/default/resources/core/Pod/default/p", value, 1, 2, 1, 0)


def test_plain_pod_changes_are_ignored() -> None:
    assert not LBSync.pods_changed_matter([WatchEvent("PUT", _kv(PLAIN), 2)])
    assert not LBSync.pods_changed_matter([WatchEvent("DELETE", _kv(b""), 3, prev_kv=_kv(PLAIN))])


def test_host_port_pods_trigger_on_change_and_on_delete() -> None:
    assert LBSync.pods_changed_matter([WatchEvent("PUT", _kv(PLAIN), 2), WatchEvent("PUT", _kv(HOSTPORT), 2)])
    assert LBSync.pods_changed_matter([WatchEvent("DELETE", _kv(b""), 3, prev_kv=_kv(HOSTPORT))])
