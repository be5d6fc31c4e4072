"""Named control loops with health, in the spirit of Cilium's controllers (``Controller Status: 3/3 healthy``).

A controller runs a function when triggered or every interval, retries failures with backoff and
keeps what ``membrane status --verbose`` shows: last success, last error, run count, message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else "0001-01-01T00:00:00Z"


def reconciler_status(health: dict[str, Any]) -> dict[str, Any]:
    """A reconciler's health (membrane.state.reconciler.Health.to_dict) for ``GET /v1/status``: times
    as RFC 3339, Go's zero time for never, as the controllers' are."""
    out = dict(health)
    for key in ("last-error-timestamp", "last-success-timestamp", "last-full-sync"):
        out[key] = _rfc3339(out.get(key) or 0.0)
    return out


@dataclass
class ControllerStatus:
    name: str
    success_count: int = 0
    failure_count: int = 0
    consecutive_failures: int = 0
    last_success: float = 0.0
    last_failure: float = 0.0
    last_error: str = ""

    @property
    def healthy(self) -> bool:
        return self.consecutive_failures == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "healthy": self.healthy,
            "success_count": self.success_count,
            "failure_count": self.failure_count,
            "consecutive_failures": self.consecutive_failures,
            "last_success": self.last_success,
            "last_failure": self.last_failure,
            "last_error": self.last_error,
        }


class Controller:
    def __init__(self, name: str, fn: Callable[[], None], interval: float = 30.0,
                 max_backoff: float = 10.0) -> None:
        self.status = ControllerStatus(name)
        self._fn = fn
        self._interval = interval
        self._max_backoff = max_backoff
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"ctrl-{name}", daemon=True)

    @property
    def name(self) -> str:
        return self.status.name

    def start(self) -> None:
        self._thread.start()

    def trigger(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def run_once(self) -> bool:
        try:
            self._fn()
        except Exception as exc:  # a controller reports, it does not die
            st = self.status
            st.failure_count += 1
            st.consecutive_failures += 1
            st.last_failure = time.time()
            st.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("controller %s failed: %s", self.name, st.last_error)
            return False
        st = self.status
        st.success_count += 1
        st.consecutive_failures = 0
        st.last_success = time.time()
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            ok = self.run_once()
            delay = self._interval if ok else min(self._max_backoff, 0.2 * 2 ** min(self.status.consecutive_failures, 6))
            self._wake.wait(delay)


class ControllerSet:
    def __init__(self) -> None:
        self._items: dict[str, Controller] = {}

    def add(self, ctrl: Controller) -> Controller:
        self._items[ctrl.name] = ctrl
        return ctrl

    def get(self, name: str) -> Controller:
        return self._items[name]

    def start(self) -> None:
        for c in self._items.values():
            c.start()

    def stop(self) -> None:
        for c in self._items.values():
            c.stop()

    def statuses(self) -> list[dict[str, Any]]:
        return [c.status.to_dict() for c in self._items.values()]
