"""Named network namespaces (``ip netns`` compatible, under /run/netns) and running code in one.

Network namespaces are per thread: :func:`run_in_netns` runs a function in a short-lived thread
that has joined the namespace, so the caller's own namespace never changes.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from pyroute2 import netns as pyroute2_netns

from membrane.datapath.linux.errors import NetError
from membrane.model.errors import ValidationError
from membrane.model.naming import NETNS_DIR

T = TypeVar("T")


def _check_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\0" in name or len(name) > 255:
        raise ValidationError(f"network namespace name {name!r}: must be 1-255 characters without '/'")
    return name


def netns_path(name_or_path: str) -> str:
    """``/run/netns/<name>`` for a name; an absolute path (e.g. ``/proc/<pid>/ns/net``) as is."""
    if name_or_path.startswith("/"):
        return name_or_path
    return f"{NETNS_DIR}/{_check_name(name_or_path)}"


def netns_exists(name_or_path: str) -> bool:
    return os.path.exists(netns_path(name_or_path))


def list_netns() -> list[str]:
    """Names of the namespaces under /run/netns, sorted."""
    return sorted(pyroute2_netns.listnetns(NETNS_DIR))


def create_netns(name: str) -> str:
    """Create ``/run/netns/<name>`` like ``ip netns add``; returns its path. Fails if it exists."""
    path = netns_path(_check_name(name))
    if os.path.exists(path):
        raise NetError(errno.EEXIST, f"create network namespace {name}")
    try:
        pyroute2_netns.create(path)
    except OSError as exc:
        if os.path.exists(path) and not os.path.ismount(path):
            os.unlink(path)  # a half-made mount point
        raise NetError(exc.errno or errno.EIO, f"create network namespace {name}") from exc
    return path


def delete_netns(name: str) -> bool:
    """Remove a named namespace like ``ip netns del``; False if it did not exist. The namespace
    itself lives on while processes still run in it."""
    path = netns_path(_check_name(name))
    if not os.path.exists(path):
        return False
    try:
        pyroute2_netns.remove(path)
    except OSError as exc:
        raise NetError(exc.errno or errno.EIO, f"delete network namespace {name}") from exc
    return True


def run_in_netns(name_or_path: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` in a new thread that joined the namespace; return its result
    or re-raise its exception here."""
    path = netns_path(name_or_path)
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            outcome["error"] = NetError(exc.errno or errno.ENOENT, f"open network namespace {name_or_path}")
            return
        try:
            try:
                pyroute2_netns.setns(fd, flags=0)
            except OSError as exc:
                outcome["error"] = NetError(exc.errno or errno.EINVAL, f"enter network namespace {name_or_path}")
                return
        finally:
            os.close(fd)
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"netns:{name_or_path}", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def in_netns(netns: str | None, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn`` in ``netns`` when given, else right here (the calling thread's namespace)."""
    if netns is None:
        return fn(*args, **kwargs)
    return run_in_netns(netns, fn, *args, **kwargs)
