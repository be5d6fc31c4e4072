"""The ctypes binding of libbpf.so.1 (1.1.x): C struct mirrors and function prototypes.

Everything else in this package calls libbpf through :func:`lib`. Struct layouts follow
/usr/include/bpf/libbpf.h and bpf.h of libbpf 1.1.2; the ``sz`` field of each opts struct tells
libbpf which version of the struct we pass, so newer libbpf 1.x accepts them unchanged.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import platform
from ctypes import (
    POINTER,
    Structure,
    c_bool,
    c_char,
    c_char_p,
    c_int,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)

from membrane.datapath.bpf.errors import BpfError

LIBRARY = "libbpf.so.1"

# enum bpf_tc_attach_point
BPF_TC_INGRESS = 1 << 0
BPF_TC_EGRESS = 1 << 1
# enum bpf_tc_flags
BPF_TC_F_REPLACE = 1 << 0
# bpf_map_update_elem flags
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
BPF_OBJ_NAME_LEN = 16


class BpfObjectOpenOpts(Structure):
    """struct bpf_object_open_opts (libbpf 1.1)."""

    _fields_ = [
        ("sz", c_size_t),
        ("object_name", c_char_p),
        ("relaxed_maps", c_bool),
        ("pin_root_path", c_char_p),
        ("_removed_attach_prog_fd", c_uint32),
        ("kconfig", c_char_p),
        ("btf_custom_path", c_char_p),
        ("kernel_log_buf", c_void_p),
        ("kernel_log_size", c_size_t),
        ("kernel_log_level", c_uint32),
    ]


class BpfTcHook(Structure):
    """struct bpf_tc_hook."""

    _fields_ = [
        ("sz", c_size_t),
        ("ifindex", c_int),
        ("attach_point", c_int),
        ("parent", c_uint32),
    ]


class BpfTcOpts(Structure):
    """struct bpf_tc_opts."""

    _fields_ = [
        ("sz", c_size_t),
        ("prog_fd", c_int),
        ("flags", c_uint32),
        ("prog_id", c_uint32),
        ("handle", c_uint32),
        ("priority", c_uint32),
    ]


class BpfTestRunOpts(Structure):
    """struct bpf_test_run_opts."""

    _fields_ = [
        ("sz", c_size_t),
        ("data_in", c_void_p),
        ("data_out", c_void_p),
        ("data_size_in", c_uint32),
        ("data_size_out", c_uint32),
        ("ctx_in", c_void_p),
        ("ctx_out", c_void_p),
        ("ctx_size_in", c_uint32),
        ("ctx_size_out", c_uint32),
        ("retval", c_uint32),
        ("repeat", c_int),
        ("duration", c_uint32),
        ("flags", c_uint32),
        ("cpu", c_uint32),
        ("batch_size", c_uint32),
    ]


class BpfProgInfo(Structure):
    """The leading fields of struct bpf_prog_info (the kernel fills as much as we ask for)."""

    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("tag", c_uint8 * 8),
        ("jited_prog_len", c_uint32),
        ("xlated_prog_len", c_uint32),
        ("jited_prog_insns", c_uint64),
        ("xlated_prog_insns", c_uint64),
        ("load_time", c_uint64),
        ("created_by_uid", c_uint32),
        ("nr_map_ids", c_uint32),
        ("map_ids", c_uint64),
        ("name", c_char * BPF_OBJ_NAME_LEN),
    ]


class BpfMapInfo(Structure):
    """The leading fields of struct bpf_map_info."""

    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("key_size", c_uint32),
        ("value_size", c_uint32),
        ("max_entries", c_uint32),
        ("map_flags", c_uint32),
        ("name", c_char * BPF_OBJ_NAME_LEN),
    ]


# name -> (restype, argtypes)
_PROTOTYPES: dict[str, tuple[object, list[object]]] = {
    "bpf_object__open_file": (c_void_p, [c_char_p, POINTER(BpfObjectOpenOpts)]),
    "bpf_object__load": (c_int, [c_void_p]),
    "bpf_object__close": (None, [c_void_p]),
    "bpf_object__find_program_by_name": (c_void_p, [c_void_p, c_char_p]),
    "bpf_object__find_map_by_name": (c_void_p, [c_void_p, c_char_p]),
    "bpf_object__next_program": (c_void_p, [c_void_p, c_void_p]),
    "bpf_object__next_map": (c_void_p, [c_void_p, c_void_p]),
    "bpf_program__fd": (c_int, [c_void_p]),
    "bpf_program__name": (c_char_p, [c_void_p]),
    "bpf_program__pin": (c_int, [c_void_p, c_char_p]),
    "bpf_map__fd": (c_int, [c_void_p]),
    "bpf_map__name": (c_char_p, [c_void_p]),
    "bpf_map__pin_path": (c_char_p, [c_void_p]),
    "bpf_tc_hook_create": (c_int, [POINTER(BpfTcHook)]),
    "bpf_tc_hook_destroy": (c_int, [POINTER(BpfTcHook)]),
    "bpf_tc_attach": (c_int, [POINTER(BpfTcHook), POINTER(BpfTcOpts)]),
    "bpf_tc_detach": (c_int, [POINTER(BpfTcHook), POINTER(BpfTcOpts)]),
    "bpf_tc_query": (c_int, [POINTER(BpfTcHook), POINTER(BpfTcOpts)]),
    "bpf_map_update_elem": (c_int, [c_int, c_void_p, c_void_p, c_uint64]),
    "bpf_map_lookup_elem": (c_int, [c_int, c_void_p, c_void_p]),
    "bpf_map_delete_elem": (c_int, [c_int, c_void_p]),
    "bpf_map_get_next_key": (c_int, [c_int, c_void_p, c_void_p]),
    "bpf_obj_pin": (c_int, [c_int, c_char_p]),
    "bpf_link_create": (c_int, [c_int, c_int, c_int, c_void_p]),
    "bpf_obj_get": (c_int, [c_char_p]),
    "bpf_obj_get_info_by_fd": (c_int, [c_int, c_void_p, POINTER(c_uint32)]),
    "bpf_prog_test_run_opts": (c_int, [c_int, POINTER(BpfTestRunOpts)]),
    "libbpf_num_possible_cpus": (c_int, []),
    "libbpf_version_string": (c_char_p, []),
}

# enum libbpf_print_level
LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG = 0, 1, 2
PRINT_FN = ctypes.CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
LOGGER_NAME = "membrane.libbpf"


def _route_prints_to_logging(handle: ctypes.CDLL) -> None:
    """Send libbpf's messages to the ``membrane.libbpf`` logger instead of stderr.

    libbpf hands us ``(level, format, va_list)``; libc's vsnprintf formats it. On x86-64 a
    va_list argument is a pointer, so this is only installed there (elsewhere libbpf keeps
    printing to stderr). Kernel netlink messages ("Kernel error message: ...") duplicate the
    errno we raise or deliberately tolerate (e.g. EEXIST), so they are logged at DEBUG.
    """
    if platform.machine() not in ("x86_64", "AMD64"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    vsnprintf = libc.vsnprintf
    vsnprintf.restype = c_int
    vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]
    logger = logging.getLogger(LOGGER_NAME)

    def emit(level: int, fmt: bytes, args: int) -> int:
        buf = ctypes.create_string_buffer(1024)
        vsnprintf(buf, len(buf), fmt, args)
        text = buf.value.decode(errors="replace").rstrip()
        body = text.removeprefix("libbpf: ")
        if level == LIBBPF_WARN and not body.startswith("Kernel error message"):
            logger.warning("%s", body)
        elif level == LIBBPF_DEBUG:
            logger.log(5, "%s", body)  # below DEBUG: libbpf's debug output is very chatty
        else:
            logger.debug("%s", body)
        return 0

    callback = PRINT_FN(emit)
    handle.libbpf_set_print.restype = c_void_p
    handle.libbpf_set_print.argtypes = [PRINT_FN]
    handle.libbpf_set_print(callback)
    handle.membrane_print_callback = callback  # libbpf keeps the pointer: keep the object alive


@functools.cache
def lib() -> ctypes.CDLL:
    """The loaded library with prototypes set (loaded once; the handle itself is immutable)."""
    try:
        handle = ctypes.CDLL(LIBRARY, use_errno=True)
    except OSError as exc:
        raise BpfError(errno.ENOENT, f"loading {LIBRARY}", "install libbpf1 (apt: libbpf-dev)") from exc
    for name, (restype, argtypes) in _PROTOTYPES.items():
        func = getattr(handle, name)
        func.restype = restype
        func.argtypes = argtypes
    _route_prints_to_logging(handle)
    return handle


def check(ret: int, what: str) -> int:
    """libbpf 1.x returns ``-errno`` on failure; raise BpfError for it, else return ``ret``."""
    if ret < 0:
        raise BpfError(-ret, what)
    return ret


def last_errno() -> int:
    """errno of the last libbpf call in this thread (for functions that return NULL)."""
    return ctypes.get_errno() or errno.EIO  # if libbpf forgot to set it


def c_path(path: str) -> bytes:
    return path.encode()


def sized(struct_type: type[Structure], **fields: object) -> Structure:
    """An opts struct with ``sz`` filled in, as libbpf's LIBBPF_OPTS macro does."""
    opts = struct_type(**fields)
    opts.sz = ctypes.sizeof(struct_type)  # type: ignore[attr-defined]
    return opts
