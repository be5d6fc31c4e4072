"""bpf(2) operations on file descriptors: map elements, pins, object info, test runs.

Keys and values are ctypes objects (or buffers) of exactly the map's key and value size; the
typed wrappers in membrane.datapath.maps build them.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from typing import Any

from membrane.datapath.bpf.errors import BpfError
from membrane.datapath.bpf.libbpf import (
    BPF_ANY,
    BpfMapInfo,
    BpfProgInfo,
    BpfTestRunOpts,
    c_path,
    check,
    lib,
    sized,
)

CBuffer = Any  # a ctypes Structure, Array or string buffer: anything ctypes.byref accepts


def map_update(fd: int, key: CBuffer, value: CBuffer, flags: int = BPF_ANY, what: str = "map") -> None:
    check(lib().bpf_map_update_elem(fd, ctypes.byref(key), ctypes.byref(value), flags), f"{what}: update")


def map_lookup(fd: int, key: CBuffer, value: CBuffer, what: str = "map") -> bool:
    """Fill ``value`` for ``key``; False if the key is absent."""
    ret = lib().bpf_map_lookup_elem(fd, ctypes.byref(key), ctypes.byref(value))
    if ret == -errno.ENOENT:
        return False
    check(ret, f"{what}: lookup")
    return True


def map_delete(fd: int, key: CBuffer, what: str = "map") -> bool:
    """Delete ``key``; False if it was absent."""
    ret = lib().bpf_map_delete_elem(fd, ctypes.byref(key))
    if ret == -errno.ENOENT:
        return False
    check(ret, f"{what}: delete")
    return True


def map_next_key(fd: int, key: CBuffer | None, next_key: CBuffer, what: str = "map") -> bool:
    """Fill ``next_key`` with the key after ``key`` (the first key if None); False at the end."""
    ret = lib().bpf_map_get_next_key(fd, ctypes.byref(key) if key is not None else None, ctypes.byref(next_key))
    if ret == -errno.ENOENT:
        return False
    check(ret, f"{what}: get next key")
    return True


def map_keys(fd: int, key_type: type, what: str = "map") -> Iterator[Any]:
    """Every key of a map, as fresh ``key_type`` instances. Keys deleted meanwhile are skipped;
    if the current key vanishes the kernel restarts from the first key, so callers dedupe."""
    previous = None
    while True:
        current = key_type()
        if not map_next_key(fd, previous, current, what):
            return
        yield current
        previous = current


def obj_get(path: str) -> int:
    """Open a pinned map or program; the caller closes the fd."""
    ret = lib().bpf_obj_get(c_path(path))
    if ret < 0:
        raise BpfError(-ret, f"open pinned object {path}")
    return ret


def obj_pin(fd: int, path: str) -> None:
    check(lib().bpf_obj_pin(fd, c_path(path)), f"pin {path}")


def obj_pin_replace(fd: int, path: str) -> None:
    """Pin ``fd`` at ``path``, replacing an older pin there in one rename (readers never see none)."""
    temporary = f"{path}_new_{os.getpid()}"  # bpffs names may not contain dots
    try:
        obj_pin(fd, temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise


def close_fd(fd: int) -> None:
    """Close an fd we own; closing twice is a bug, so EBADF propagates."""
    os.close(fd)


def _info(fd: int, info: ctypes.Structure, what: str) -> None:
    size = ctypes.c_uint32(ctypes.sizeof(info))
    check(lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)), what)


def prog_info(fd: int) -> BpfProgInfo:
    info = BpfProgInfo()
    _info(fd, info, f"program fd {fd}: get info")
    return info


def map_info(fd: int) -> BpfMapInfo:
    info = BpfMapInfo()
    _info(fd, info, f"map fd {fd}: get info")
    return info


SKB_MARK_END = 12  # struct __sk_buff: len, pkt_type, mark (u32 each); the prefix a tc test run may set
SKB_CTX_ROOM = 256  # the kernel writes the whole __sk_buff back (ENOSPC when the buffer is smaller)


def _test_run(prog_fd: int, data: bytes, repeat: int, out_room: int, mark: int | None) -> tuple[int, bytes, int]:
    """BPF_PROG_TEST_RUN on ``data``; with ``mark``, a tc program's __sk_buff context carries it in and
    its value after the run comes back (else 0)."""
    data_in = ctypes.create_string_buffer(data, len(data))
    data_out = ctypes.create_string_buffer(len(data) + out_room)
    fields: dict[str, object] = {
        "data_in": ctypes.cast(data_in, ctypes.c_void_p), "data_out": ctypes.cast(data_out, ctypes.c_void_p),
        "data_size_in": len(data), "data_size_out": len(data_out), "repeat": repeat}
    ctx_out = None
    if mark is not None:
        ctx_in = ctypes.create_string_buffer(bytes(8) + mark.to_bytes(4, "little"), SKB_MARK_END)
        ctx_out = ctypes.create_string_buffer(SKB_CTX_ROOM)
        fields.update(ctx_in=ctypes.cast(ctx_in, ctypes.c_void_p), ctx_out=ctypes.cast(ctx_out, ctypes.c_void_p),
                      ctx_size_in=SKB_MARK_END, ctx_size_out=SKB_CTX_ROOM)
    opts = sized(BpfTestRunOpts, **fields)
    check(lib().bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)), f"program fd {prog_fd}: test run")
    mark_after = int.from_bytes(ctx_out.raw[8:12], "little") if ctx_out is not None else 0
    return opts.retval, data_out.raw[: opts.data_size_out], mark_after


def prog_test_run(prog_fd: int, data: bytes, repeat: int = 1, out_room: int = 256) -> tuple[int, bytes]:
    """Run a program on ``data`` with BPF_PROG_TEST_RUN; returns (return value, packet after)."""
    retval, out, _ = _test_run(prog_fd, data, repeat, out_room, None)
    return retval, out


def prog_test_run_marked(prog_fd: int, data: bytes, mark: int, out_room: int = 256) -> tuple[int, bytes, int]:
    """prog_test_run for a tc program with skb->mark set to ``mark`` (the __sk_buff context);
    returns (return value, packet after, skb->mark after)."""
    return _test_run(prog_fd, data, 1, out_room, mark)
