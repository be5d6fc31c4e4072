"""The node's state file written off the node lock, newest snapshot only, by one writer thread.

Each change of endpoints or IP allocations takes a snapshot under the node lock (cheap: dicts) and hands
it here with ``submit``, which returns its number. The writer thread encodes and writes the newest
snapshot it holds; older ones that it has not reached are skipped (the newer one contains them). So a
burst of ADDs costs a few writes, and none of them under the lock that every ADD needs. The file was
rewritten whole, three times per pod, under that lock (issue 16: O(n) per pod at 100 pods a node).

``wait(number)`` returns once a snapshot at least that new is on disk (an ADD waits before it answers,
so a restarted agent finds every endpoint it reported), or raises the error that writing it met.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class StateWriter(Generic[T]):
    def __init__(self, write: Callable[[T], None], name: str = "state-writer") -> None:
        self._write = write
        self._name = name
        self._cond = threading.Condition()
        self._latest: tuple[int, T] | None = None  # the newest snapshot not written yet
        self.requested = 0  # number of the newest snapshot submitted
        self._done = 0  # newest snapshot whose write has finished (well or not)
        self._ok = 0  # newest snapshot written well
        self._error: BaseException | None = None  # what writing snapshot ``_done`` raised
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, snapshot: T) -> int:
        """Queue ``snapshot`` (replacing any older one not written yet); its number for ``wait``."""
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self._name}: closed")
            self.requested += 1
            self._latest = (self.requested, snapshot)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify_all()
            return self.requested

    def wait(self, number: int) -> None:
        """Until snapshot ``number`` or a newer one is on disk; raises what its write raised."""
        with self._cond:
            while self._done < number:
                self._cond.wait()
            if self._ok >= number:
                return
            assert self._error is not None
            raise self._error

    def close(self) -> None:
        """Write what is queued, then stop the thread. Errors are logged (the caller is shutting down)."""
        with self._cond:
            number = self.requested
        try:
            self.wait(number)
        except Exception:
            log.exception("%s: the last state snapshot was not written", self._name)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._latest is None and not self._closed:
                    self._cond.wait()
                if self._latest is None:
                    return
                number, snapshot = self._latest
                self._latest = None
            error: BaseException | None = None
            try:
                self._write(snapshot)
            except BaseException as exc:  # handed to the waiters of this snapshot
                log.warning("%s: writing state snapshot %d failed: %s", self._name, number, exc)
                error = exc
            with self._cond:
                self._done = number
                if error is None:
                    self._ok = number
                self._error = error
                self._cond.notify_all()
