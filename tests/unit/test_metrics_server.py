"""The /metrics HTTP server: a round trip on 127.0.0.1 (ephemeral port) and on a unix socket."""

from __future__ import annotations

import http.client
from pathlib import Path

import pytest

from membrane.hubble.metrics import Registry
from membrane.metricsserver import MetricsServer, fetch_metrics


def registry() -> Registry:
    reg = Registry()
    reg.counter("hubble_drop_total", "Number of drops", ["reason", "protocol"]).inc(["POLICY_DENIED", "TCP"])
    return reg


def test_tcp_round_trip() -> None:
    reg = registry()
    with MetricsServer(("127.0.0.1", 0), reg.exposition) as server:
        host, port = server.address
        assert host == "127.0.0.1" and port > 0
        assert fetch_metrics((host, port), timeout=5) == reg.exposition()
        reg.families["hubble_drop_total"].inc(["POLICY_DENIED", "TCP"])
        assert 'hubble_drop_total{protocol="TCP",reason="POLICY_DENIED"} 2.0' in fetch_metrics(f"{host}:{port}")
        conn = http.client.HTTPConnection(host, port, timeout=5)
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
        resp.read()
        conn.request("GET", "/nope")
        assert conn.getresponse().status == 404
        conn.close()
        with pytest.raises(OSError, match="404"):
            fetch_metrics((host, port), path="/other")


def test_failing_render_is_a_500() -> None:
    def broken() -> str:
        raise RuntimeError("collector exploded")

    with MetricsServer(("127.0.0.1", 0), broken) as server, pytest.raises(OSError, match="500"):
        fetch_metrics(server.address)


def test_unix_socket_round_trip(tmp_path: Path) -> None:
    path = str(tmp_path / "metrics.sock")
    reg = registry()
    server = MetricsServer(path, reg.exposition).start()
    try:
        assert server.address == path
        assert fetch_metrics(path) == reg.exposition()
    finally:
        server.close()
    assert not Path(path).exists()
