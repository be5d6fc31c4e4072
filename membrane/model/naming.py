"""Names every process agrees on: lab names, pod host names, host veth names.

Run-time paths are not here: an agent's come from its configuration (membrane.api.agent_config), a
lab's from membrane.lab.paths. ``NETNS_DIR`` is iproute2's convention for named network namespaces.
"""

from __future__ import annotations

import hashlib
import re

NETNS_DIR = "/run/netns"
NAME_MAX = 255  # bytes in one file name (Linux)
DEFAULT_LAB = "membrane"
DEFAULT_CLUSTER = "default"

_LAB_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$")


def validate_lab_name(name: str) -> str:
    """Lab names become namespace prefixes, so they stay short DNS labels."""
    if not _LAB_NAME.match(name):
        raise ValueError(
            f"lab name {name!r}: must be 1-20 characters of a-z, 0-9 and '-', starting and ending alphanumeric"
        )
    return name


def pod_hostname(pod: str) -> str:
    """The pod's hostname: its name cut to a DNS label's 63 characters, as the kubelet does
    (without a trailing '-' or '.' left by the cut)."""
    return pod[:63].rstrip("-.") or "pod"


def host_veth_name(container_id: str, ifname: str = "eth0") -> str:
    """Host side of a pod veth: ``lxc`` + 11 hex chars of a hash (15 chars, the kernel limit)."""
    digest = hashlib.sha256(f"{container_id}/{ifname}".encode()).hexdigest()
    return f"lxc{digest[:11]}"
