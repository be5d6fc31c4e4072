"""Prometheus ``/metrics`` over HTTP: a tiny threaded server on a TCP address or a unix socket (lab), and
the matching client. Network I/O lives here; what to expose comes from a render callable
(``Registry.exposition`` of :mod:`membrane.hubble.metrics`).
"""

from membrane.metricsserver.server import MetricsServer, fetch_metrics

__all__ = ["MetricsServer", "fetch_metrics"]
