"""Classic tc (clsact) attachment through libbpf's bpf_tc_* API.

Every call works on the network namespace of the calling thread (libbpf opens a netlink socket
per call): an agent running inside a node's netns just calls these; others wrap them in
membrane.datapath.linux.netns.run_in_netns.
"""

from __future__ import annotations

import ctypes
import errno
from enum import IntEnum

from membrane.datapath.bpf.errors import BpfError
from membrane.datapath.bpf.libbpf import (
    BPF_TC_EGRESS,
    BPF_TC_F_REPLACE,
    BPF_TC_INGRESS,
    BpfTcHook,
    BpfTcOpts,
    check,
    lib,
    sized,
)


class Direction(IntEnum):
    """Where on a device a program runs: ingress = packets the device receives."""

    INGRESS = BPF_TC_INGRESS
    EGRESS = BPF_TC_EGRESS


def _hook(ifindex: int, direction: int) -> BpfTcHook:
    if ifindex <= 0:
        raise BpfError(errno.EINVAL, f"tc hook on ifindex {ifindex}", "ifindex must be positive")
    return sized(BpfTcHook, ifindex=ifindex, attach_point=int(direction))


def _where(ifindex: int, direction: int) -> str:
    names = {int(d): d.name.lower() for d in Direction}
    return f"tc {names.get(int(direction), hex(direction))} of ifindex {ifindex}"


def tc_hook_create(ifindex: int, direction: int = BPF_TC_INGRESS | BPF_TC_EGRESS) -> None:
    """Ensure the clsact qdisc exists on the device (EEXIST is success)."""
    ret = lib().bpf_tc_hook_create(ctypes.byref(_hook(ifindex, direction)))
    if ret == -errno.EEXIST:
        return
    check(ret, f"create clsact qdisc on ifindex {ifindex}")


def tc_hook_destroy(ifindex: int) -> None:
    """Remove the clsact qdisc and every filter on it (missing device or qdisc is fine)."""
    ret = lib().bpf_tc_hook_destroy(ctypes.byref(_hook(ifindex, BPF_TC_INGRESS | BPF_TC_EGRESS)))
    if ret in (-errno.ENOENT, -errno.ENODEV, -errno.EINVAL):
        return
    check(ret, f"remove clsact qdisc on ifindex {ifindex}")


def tc_attach(
    ifindex: int, direction: int, prog_fd: int, handle: int = 1, priority: int = 1, replace: bool = True
) -> int:
    """Attach a program as filter (handle, priority); returns its program id.

    With ``replace`` an existing filter at the same handle/priority is swapped in one netlink
    request: packets see either the old or the new program, never none.
    """
    opts = sized(
        BpfTcOpts, prog_fd=prog_fd, handle=handle, priority=priority, flags=BPF_TC_F_REPLACE if replace else 0
    )
    check(lib().bpf_tc_attach(ctypes.byref(_hook(ifindex, direction)), ctypes.byref(opts)),
          f"attach program fd {prog_fd} at {_where(ifindex, direction)}")
    return opts.prog_id


def tc_detach(ifindex: int, direction: int, handle: int = 1, priority: int = 1) -> bool:
    """Remove our filter; False if it (or the device or the qdisc) was not there."""
    opts = sized(BpfTcOpts, handle=handle, priority=priority)
    ret = lib().bpf_tc_detach(ctypes.byref(_hook(ifindex, direction)), ctypes.byref(opts))
    if ret in (-errno.ENOENT, -errno.ENODEV, -errno.EINVAL):
        return False
    check(ret, f"detach filter {handle}/{priority} at {_where(ifindex, direction)}")
    return True


def tc_query(ifindex: int, direction: int, handle: int = 1, priority: int = 1) -> int | None:
    """The id of the program attached as filter (handle, priority), or None."""
    opts = sized(BpfTcOpts, handle=handle, priority=priority)
    ret = lib().bpf_tc_query(ctypes.byref(_hook(ifindex, direction)), ctypes.byref(opts))
    if ret in (-errno.ENOENT, -errno.ENODEV, -errno.EINVAL):
        return None
    check(ret, f"query filter {handle}/{priority} at {_where(ifindex, direction)}")
    return opts.prog_id
