"""PinnedMap: a BPF map opened from its bpffs pin, checked against the layout we expect."""

from __future__ import annotations

import ctypes
import errno
import os

from membrane.datapath.bpf.errors import BpfError
from membrane.datapath.bpf.syscalls import close_fd, map_info, obj_get

# enum bpf_map_type values we use
BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_LRU_HASH = 9
BPF_MAP_TYPE_LPM_TRIE = 11


class PinnedMap:
    """Base of the typed map wrappers: owns one fd; subclasses set the class attributes."""

    NAME: str = ""
    MAP_TYPE: int = 0
    KEY: type[ctypes.Structure]
    VALUE: type[ctypes.Structure]

    def __init__(self, fd: int, path: str) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def open(cls, pin_dir: str):  # -> Self
        """Open ``<pin_dir>/<NAME>``; raise BpfError if it is missing or of another layout."""
        path = os.path.join(pin_dir, cls.NAME)
        fd = obj_get(path)
        try:
            cls._check(fd, path)
            return cls(fd, path)
        except BaseException:
            close_fd(fd)
            raise

    @classmethod
    def _check(cls, fd: int, path: str) -> None:
        info = map_info(fd)
        want = (cls.MAP_TYPE, ctypes.sizeof(cls.KEY), ctypes.sizeof(cls.VALUE))
        have = (info.type, info.key_size, info.value_size)
        if have != want:
            raise BpfError(
                errno.EINVAL,
                f"pinned map {path}",
                f"type/key size/value size are {have}, this version expects {want}; "
                "the pin is from another build: remove the node's pins and restart its agent",
            )

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise BpfError(errno.EBADF, f"map {self.path}", "already closed")
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            close_fd(self._fd)
            self._fd = None

    def __enter__(self):  # -> Self
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
