"""BpfObject: one BPF ELF object opened and loaded through libbpf, with its programs and maps."""

from __future__ import annotations

import ctypes
import errno
import os

from membrane.datapath.bpf.errors import BpfError
from membrane.datapath.bpf.libbpf import BpfObjectOpenOpts, c_path, check, last_errno, lib, sized
from membrane.datapath.bpf.syscalls import obj_pin_replace

# Room for the verifier log of a failed load (libbpf retries a failed load with logging on).
VERIFIER_LOG_SIZE = 4 << 20
VERIFIER_LOG_TAIL_LINES = 30


class BpfObject:
    """``BpfObject.open(path, pin_root)`` → ``load()`` → ``program_fd(name)`` / ``map_fd(name)``.

    Maps declared with ``LIBBPF_PIN_BY_NAME`` are pinned as ``<pin_root>/<map name>``; if a pin
    exists already libbpf reuses that map (contents included) when its type and sizes match, and
    load fails with a BpfError otherwise. The fds belong to the object: ``close()`` releases them
    (pinned maps and attached programs stay alive in the kernel).
    """

    def __init__(self, handle: int, path: str, pin_root: str | None, log: ctypes.Array) -> None:
        self._handle: int | None = handle
        self.path = path
        self.pin_root = pin_root
        self._log = log  # libbpf writes into it during load(); keep it alive until then
        self.loaded = False

    @classmethod
    def open(cls, path: str, pin_root: str | None = None) -> BpfObject:
        if not os.path.isfile(path):
            raise BpfError(errno.ENOENT, f"open BPF object {path}", "the file does not exist (run `make bpf`)")
        if pin_root is not None:
            os.makedirs(pin_root, exist_ok=True)
        log = ctypes.create_string_buffer(VERIFIER_LOG_SIZE)
        opts = sized(
            BpfObjectOpenOpts,
            pin_root_path=c_path(pin_root) if pin_root is not None else None,
            kernel_log_buf=ctypes.cast(log, ctypes.c_void_p),
            kernel_log_size=VERIFIER_LOG_SIZE,
        )
        handle = lib().bpf_object__open_file(c_path(path), ctypes.byref(opts))
        if not handle:
            raise BpfError(last_errno(), f"open BPF object {path}")
        return cls(handle, path, pin_root, log)

    @property
    def handle(self) -> int:
        if self._handle is None:
            raise BpfError(errno.EBADF, f"BPF object {self.path}", "already closed")
        return self._handle

    def load(self) -> None:
        ret = lib().bpf_object__load(self.handle)
        if ret < 0:
            raise BpfError(-ret, f"load BPF object {self.path}", self._log_tail())
        self.loaded = True
        self._log = ctypes.create_string_buffer(1)  # libbpf no longer uses it

    def _log_tail(self) -> str:
        text = self._log.value.decode(errors="replace").strip()
        if not text:
            return "(no verifier log; see libbpf messages on stderr)"
        lines = text.splitlines()[-VERIFIER_LOG_TAIL_LINES:]
        return "verifier log (tail):\n" + "\n".join(lines)

    def _program(self, name: str) -> int:
        prog = lib().bpf_object__find_program_by_name(self.handle, name.encode())
        if not prog:
            raise BpfError(errno.ENOENT, f"{self.path}: program {name!r}", f"programs here: {', '.join(self.program_names())}")
        return prog

    def _map(self, name: str) -> int:
        bpf_map = lib().bpf_object__find_map_by_name(self.handle, name.encode())
        if not bpf_map:
            raise BpfError(errno.ENOENT, f"{self.path}: map {name!r}", f"maps here: {', '.join(self.map_names())}")
        return bpf_map

    def program_names(self) -> list[str]:
        names, prog = [], None
        while prog := lib().bpf_object__next_program(self.handle, prog):
            names.append(lib().bpf_program__name(prog).decode())
        return names

    def map_names(self) -> list[str]:
        names, bpf_map = [], None
        while bpf_map := lib().bpf_object__next_map(self.handle, bpf_map):
            names.append(lib().bpf_map__name(bpf_map).decode())
        return names

    def program_fd(self, name: str) -> int:
        return check(lib().bpf_program__fd(self._program(name)), f"{self.path}: program {name!r} fd (loaded?)")

    def map_fd(self, name: str) -> int:
        return check(lib().bpf_map__fd(self._map(name)), f"{self.path}: map {name!r} fd (loaded?)")

    def map_pin_path(self, name: str) -> str | None:
        path = lib().bpf_map__pin_path(self._map(name))
        return path.decode() if path else None

    def pin_program(self, name: str, path: str) -> None:
        """Pin a loaded program at ``path``, replacing an older pin there in one rename."""
        fd = self.program_fd(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        obj_pin_replace(fd, path)

    def close(self) -> None:
        if self._handle is not None:
            lib().bpf_object__close(self._handle)
            self._handle = None

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten object must not leak its fds
        self.close()
