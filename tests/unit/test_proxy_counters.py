"""The proxy server's status counters are bumped from every worker loop's thread: a bump is one locked
read-modify-write, so none is lost and a reader never sees half of one."""

from __future__ import annotations

import threading

from membrane.proxy.registry import Registry
from membrane.proxy.server import ProxyServer


def _server() -> ProxyServer:
    return ProxyServer(Registry(), lambda *_: None, workers=2)


def test_a_bump_waits_for_the_counts_lock():
    server = _server()
    try:
        with server._counts_lock:  # held elsewhere: the bump must wait, not write past it
            bumper = threading.Thread(target=server._bump, args=("errors",))
            bumper.start()
            bumper.join(0.3)
            assert bumper.is_alive() and server.errors == 0
        bumper.join(5)
        assert not bumper.is_alive() and server.errors == 1
    finally:
        for loop in server._loops:
            loop.close()


def test_counts_bumped_from_many_threads_are_all_kept():
    server = _server()
    try:
        threads = [threading.Thread(target=lambda: [server._bump("connections") for _ in range(5000)])
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert server.connections == 8 * 5000 and server.errors == 0
    finally:
        for loop in server._loops:
            loop.close()
