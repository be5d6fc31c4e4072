"""BpfError: a failed libbpf or bpf(2) call, with the errno and what we were doing."""

from __future__ import annotations

import errno as errno_codes
import os


class BpfError(OSError):
    """``BpfError(errno, what)``; ``str()`` reads ``what: strerror [ENAME]`` plus any detail.

    It is an OSError, so ``err.errno`` works and callers may test for e.g. ``errno.ENOENT``.
    ``detail`` carries extra text such as the tail of the verifier log.
    """

    def __init__(self, errno: int, what: str, detail: str = "") -> None:
        super().__init__(errno, os.strerror(errno) if errno else "unknown error")
        self.what = what
        self.detail = detail

    def __str__(self) -> str:
        name = errno_codes.errorcode.get(self.errno, str(self.errno))
        text = f"{self.what}: {self.strerror} [{name}]"
        return f"{text}\n{self.detail}" if self.detail else text

    def __reduce__(self):  # keep pickling (e.g. across processes) faithful to the constructor
        return (type(self), (self.errno, self.what, self.detail))
