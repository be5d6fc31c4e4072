"""NetError: a failed netlink or procfs operation, saying what we were doing and why it failed."""

from __future__ import annotations

import errno as errno_codes
import os


class NetError(OSError):
    """``NetError(errno, what)``; ``str()`` reads ``what: strerror [ENAME]``. An OSError, so
    ``err.errno`` can be tested (e.g. ``errno.EEXIST``)."""

    def __init__(self, errno: int, what: str) -> None:
        super().__init__(errno, os.strerror(errno) if errno else "unknown error")
        self.what = what

    def __str__(self) -> str:
        name = errno_codes.errorcode.get(self.errno, str(self.errno))
        return f"{self.what}: {self.strerror} [{name}]"

    def __reduce__(self):
        return (type(self), (self.errno, self.what))
