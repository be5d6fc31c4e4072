"""Hubble's line in ``membrane status``, from the numbers of an Observer ``ServerStatus`` answer.

``render_hubble_status(num_flows, max_flows, flows_rate)`` gives the value printed after ``Hubble:``,
as cilium-dbg does: ``Ok   Current/Max Flows: 12/4095 (0.29%), Flows/s: 1.50   Metrics: Ok``.
``hubble_status_dict`` gives the same facts in the ``hubble`` object of the agent's ``/v1/status``
(the shape :mod:`membrane.cli.dbg_status` renders).
"""

from __future__ import annotations

from typing import Any


def render_hubble_status(num_flows: int, max_flows: int, flows_rate: float, *, state: str = "Ok",
                         metrics_state: str | None = None) -> str:
    """The text after ``Hubble:`` in ``membrane status``."""
    parts = [state]
    if max_flows > 0:
        parts.append(f"Current/Max Flows: {num_flows}/{max_flows} ({num_flows / max_flows * 100:.2f}%), "
                     f"Flows/s: {flows_rate:.2f}")
    if metrics_state is not None:
        parts.append(f"Metrics: {metrics_state}")
    return "   ".join(parts)


def render_hubble_status_line(num_flows: int, max_flows: int, flows_rate: float, **kwargs: Any) -> str:
    """The whole line: ``Hubble:   Ok   Current/Max Flows: N/4095 (x%), Flows/s: y``."""
    return "Hubble:   " + render_hubble_status(num_flows, max_flows, flows_rate, **kwargs)


def hubble_status_dict(num_flows: int, max_flows: int, seen_flows: int, uptime_seconds: float,
                       *, state: str = "Ok", metrics_state: str | None = None) -> dict[str, Any]:
    """The ``hubble`` object of ``/v1/status`` (Flows/s = seen flows / uptime, as cilium-dbg computes it)."""
    status: dict[str, Any] = {
        "state": state, "msg": "",
        "observer": {"current-flows": num_flows, "max-flows": max_flows, "seen-flows": seen_flows,
                     "uptime": uptime_seconds},
    }
    if metrics_state is not None:
        status["metrics"] = {"state": metrics_state}
    return status


def from_server_status(response: Any) -> tuple[int, int, float]:
    """``(num_flows, max_flows, flows_rate)`` of an ``observer.ServerStatusResponse``; the rate falls back
    to seen_flows / uptime when the server leaves ``flows_rate`` at zero."""
    rate = float(response.flows_rate)
    if rate == 0.0 and response.uptime_ns:
        rate = response.seen_flows / (response.uptime_ns / 1e9)
    return int(response.num_flows), int(response.max_flows), rate
