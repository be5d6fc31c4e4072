"""Process plumbing shared by the workloads: hostname, listen address, Go-style logs, signals, exit.

A workload binds its sockets first (so a port clash fails fast with exit 1), then runs its serving loops in
daemon threads while the main thread waits for SIGTERM/SIGINT (exit 0) or a loop's failure (exit 1).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import NoReturn

LISTEN_ENV = "MEMBRANE_LISTEN_ADDRESS"


def hostname() -> str:
    """The pod's hostname: $HOSTNAME as the kubelet sets it, else the UTS name."""
    return os.environ.get("HOSTNAME") or socket.gethostname()


def listen_address() -> str:
    return os.environ.get(LISTEN_ENV) or "0.0.0.0"


def log(message: str) -> None:
    """One line on stderr in the format of Go's log package (``2006/01/02 15:04:05 message``)."""
    sys.stderr.write(f"{time.strftime('%Y/%m/%d %H:%M:%S')} {message}\n")
    sys.stderr.flush()


def fatal(message: str, code: int = 1) -> NoReturn:
    log(message)
    sys.stdout.flush()
    os._exit(code)


def exit_now(code: int) -> NoReturn:
    """Leave at once (from any thread), as Go's os.Exit does."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class _Terminated(Exception):
    pass


def _on_signal(signum: int, _frame: object) -> None:
    raise _Terminated(signum)


def run_until_terminated(
    loops: list[Callable[[], None]], on_signal: Callable[[int], None] | None = None
) -> NoReturn:
    """Run each loop in a daemon thread; exit 0 on SIGTERM/SIGINT, 1 if a loop fails or returns."""
    failed = threading.Event()

    def guard(loop: Callable[[], None]) -> None:
        try:
            loop()
            log(f"{getattr(loop, '__name__', 'server')} stopped")
        except BaseException as exc:  # noqa: BLE001 - any failure of a serving loop ends the process
            log(f"fatal: {exc}")
        failed.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        for loop in loops:
            threading.Thread(target=guard, args=(loop,), daemon=True).start()
        while not failed.wait(3600):
            pass
    except _Terminated as term:
        if on_signal is not None:
            # A second signal during a graceful delay ends the process the default way.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            on_signal(term.args[0])
        exit_now(0)
    exit_now(1)
