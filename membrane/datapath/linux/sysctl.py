"""Kernel parameters under /proc/sys for the calling thread's network namespace (or ``netns``).

Names use sysctl's dotted form (``net.ipv4.ip_forward``, ``net.ipv4.conf.lxc1234.rp_filter``);
for device names that contain dots, pass the slash form (``net/ipv4/conf/eth0.100/rp_filter``).
"""

from __future__ import annotations

import errno

from membrane.datapath.linux.errors import NetError
from membrane.datapath.linux.netns import in_netns
from membrane.model.errors import ValidationError

PROC_SYS = "/proc/sys"


def sysctl_path(name: str) -> str:
    parts = name.split("/") if "/" in name else name.split(".")
    if not name or any(part in ("", ".", "..") or "\0" in part for part in parts):
        raise ValidationError(f"sysctl name {name!r}: expected e.g. net.ipv4.ip_forward")
    return "/".join([PROC_SYS, *parts])


def set_sysctl(name: str, value: str | int, netns: str | None = None) -> None:
    """Write one parameter. A missing key (e.g. a device that is gone) raises NetError(ENOENT)."""
    path = sysctl_path(name)
    text = str(value)
    if not text or "\n" in text:
        raise ValidationError(f"sysctl {name}: value {value!r} must be one line")

    def write() -> None:
        try:
            with open(path, "w") as f:
                f.write(text)
        except FileNotFoundError:
            raise NetError(errno.ENOENT, f"sysctl {name}: no such parameter") from None
        except OSError as exc:
            raise NetError(exc.errno or errno.EIO, f"sysctl {name}={text}") from None

    in_netns(netns, write)


def get_sysctl(name: str, netns: str | None = None) -> str:
    path = sysctl_path(name)

    def read() -> str:
        try:
            with open(path) as f:
                return f.read().strip()
        except FileNotFoundError:
            raise NetError(errno.ENOENT, f"sysctl {name}: no such parameter") from None

    return in_netns(netns, read)
