"""The WireGuard adapter (membrane.datapath.linux.wireguard) with real wireguard-go between two
namespaces: keys from wg, the device configured over its UAPI socket, pod-address traffic through
it; when wireguard-go is killed the device and its routes go, the blackholes stay and the traffic
stops (fail closed) instead of leaving in clear."""

from __future__ import annotations

import queue
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from membrane.datapath.linux import links
from membrane.datapath.linux import wireguard as wg
from membrane.datapath.linux.netns import create_netns, delete_netns, netns_path
from membrane.endpoint.encryption import key_b64, key_hex

pytestmark = pytest.mark.root


class NetnsThread:
    """A thread living in a namespace that runs calls there: wireguard-go is started with
    --pdeathsig, so it lives as long as the thread that started it."""

    def __init__(self, ns: str) -> None:
        self._calls: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, args=(netns_path(ns),), daemon=True)
        self._thread.start()

    def _loop(self, path: str) -> None:
        from pyroute2 import netns as pyroute2_netns

        with open(path) as fh:
            pyroute2_netns.setns(fh.fileno(), flags=0)
        while (item := self._calls.get()) is not None:
            fn, args, out = item
            try:
                out.put((True, fn(*args)))
            except BaseException as exc:  # re-raised in the caller
                out.put((False, exc))

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        out: queue.Queue[Any] = queue.Queue()
        self._calls.put((fn, args, out))
        ok, value = out.get(timeout=30)
        if not ok:
            raise value
        return value

    def close(self) -> None:
        self._calls.put(None)
        self._thread.join(10)


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


@pytest.fixture
def pair(tmp_path: Any) -> Iterator[dict[str, Any]]:
    if not (shutil.which("wireguard-go") and shutil.which("wg")):
        pytest.skip("wireguard-go / wg not installed (make setup installs them)")
    run = uuid.uuid4().hex[:6]
    names = {"a": f"dpt-{run}-wga", "b": f"dpt-{run}-wgb"}
    threads: dict[str, NetnsThread] = {}
    procs: dict[str, wg.WireguardProcess] = {}
    try:
        for ns in names.values():
            create_netns(ns)
        _sh("ip", "link", "add", f"wg{run}a", "netns", names["a"], "type", "veth", "peer", "name", f"wg{run}b",
            "netns", names["b"])
        for side, n in (("a", 1), ("b", 2)):
            ns = names[side]
            for cmd in (f"addr add 192.168.78.{n}/24 dev wg{run}{side}", f"link set wg{run}{side} up",
                        "link set lo up", f"addr add 10.78.{n}.1/32 dev lo"):
                _sh("ip", "-n", ns, *cmd.split())
            threads[side] = NetnsThread(ns)
            procs[side] = wg.WireguardProcess("cilium_wg0", str(tmp_path / side), str(tmp_path / f"{side}.log"))
        yield {"ns": names, "threads": threads, "procs": procs}
    finally:
        for p in procs.values():
            p.stop()
        for t in threads.values():
            t.close()
        for ns in names.values():
            delete_netns(ns)


def _ping(ns: str, src: str, dst: str) -> int:
    return _sh("ip", "netns", "exec", ns, "ping", "-c1", "-W1", "-I", src, dst, check=False).returncode


def test_pod_addresses_talk_through_wireguard_and_a_dead_device_fails_closed(pair: dict[str, Any]) -> None:
    ns, threads, procs = pair["ns"], pair["threads"], pair["procs"]
    keys = {side: wg.generate_private_key() for side in "ab"}
    pubs = {side: wg.public_key(k) for side, k in keys.items()}
    peer_of = {"a": ("b", "192.168.78.2", "10.78.2.0/24"), "b": ("a", "192.168.78.1", "10.78.1.0/24")}

    def setup(side: str) -> tuple[int, int]:
        other, ip, cidr = peer_of[side]
        procs[side].start()
        links.set_up("cilium_wg0")
        wg.configure_device(procs[side].socket_path, key_hex(keys[side]), 51871)
        wg.set_peer(procs[side].socket_path, key_hex(pubs[other]), f"{ip}:51871", [cidr])
        return wg.sync_routes("cilium_wg0", [cidr])

    assert threads["a"].call(setup, "a") == (2, 0)  # device route + blackhole
    assert threads["b"].call(setup, "b") == (2, 0)
    assert threads["a"].call(wg.sync_routes, "cilium_wg0", ["10.78.2.0/24"]) == (0, 0)  # idempotent
    assert _ping(ns["a"], "10.78.1.1", "10.78.2.1") == 0
    state = wg.uapi_get(procs["a"].socket_path)
    assert state.listen_port == 51871 and key_b64(state.private_key) == keys["a"]
    (peer,) = state.peers.values()
    assert key_b64(peer.public_key) == pubs["b"] and peer.allowed_ips == ("10.78.2.0/24",)
    assert peer.last_handshake > 0 and peer.tx_bytes > 0
    assert procs["a"].problem() == ""

    procs["a"].proc.kill()  # type: ignore[union-attr]
    procs["a"].proc.wait()  # type: ignore[union-attr]
    assert "exited" in procs["a"].problem()
    routes = _sh("ip", "-n", ns["a"], "route", "show", "proto", "212").stdout
    assert routes.split() == ["blackhole", "10.78.2.0/24", "metric", "4096"], routes
    assert _ping(ns["a"], "10.78.1.1", "10.78.2.1") != 0

    def restart() -> None:
        setup("a")

    threads["a"].call(restart)
    assert _ping(ns["a"], "10.78.1.1", "10.78.2.1") == 0
    wg.remove_peer(procs["a"].socket_path, key_hex(pubs["b"]))
    assert wg.uapi_get(procs["a"].socket_path).peers == {}
    assert threads["a"].call(wg.sync_routes, "cilium_wg0", []) == (0, 2)
