"""The ADD result the agent returns to the plugin, in the shape of the netconf's CNI version (pure).

1.0.0/1.1.0::

    {"cniVersion": "1.0.0",
     "interfaces": [{"name": "lxc1a2b3c", "mac": "…"},                      # host side: no sandbox
                    {"name": "eth0", "mac": "…", "sandbox": "/run/netns/…"}],
     "ips": [{"interface": 1, "address": "10.0.1.23/32", "gateway": "10.0.1.1"}],
     "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.1.1"}],
     "dns": {}}

0.3.0/0.3.1/0.4.0 add ``"version": "4"`` (or ``"6"``) to each ips entry.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from membrane.api.cni_versions import SUPPORTED_VERSIONS, parse_version

_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def _check_ifname(what: str, name: str) -> None:
    if not name or len(name) > 15 or name in (".", "..") or any(c in "/:" or c.isspace() for c in name):
        raise ValueError(f"{what} {name!r}: not a valid interface name (1-15 characters, no '/', ':' or spaces)")


def _check_mac(what: str, mac: str) -> str:
    if not _MAC.match(mac):
        raise ValueError(f"{what} {mac!r}: expected a MAC address like 0a:1b:2c:3d:4e:5f")
    return mac.lower()


def build_add_result(
    cni_version: str,
    ifname: str,
    host_ifname: str,
    host_mac: str,
    pod_mac: str,
    netns: str,
    ip: str,
    prefixlen: int,
    gateway: str,
) -> dict[str, Any]:
    """The ADD result for one pod interface; raises ValueError naming the bad argument."""
    if cni_version not in SUPPORTED_VERSIONS:
        raise ValueError(f"cniVersion {cni_version!r}: not one of {', '.join(SUPPORTED_VERSIONS)}")
    _check_ifname("ifname", ifname)
    _check_ifname("host_ifname", host_ifname)
    host_mac = _check_mac("host_mac", host_mac)
    pod_mac = _check_mac("pod_mac", pod_mac)
    if not netns:
        raise ValueError("netns: the sandbox path must not be empty")
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise ValueError(f"ip {ip!r}: not an IP address") from None
    try:
        gw = ipaddress.ip_address(gateway)
    except ValueError:
        raise ValueError(f"gateway {gateway!r}: not an IP address") from None
    if gw.version != address.version:
        raise ValueError(f"gateway {gateway}: IPv{gw.version} but ip {ip} is IPv{address.version}")
    if isinstance(prefixlen, bool) or not isinstance(prefixlen, int) or not 0 <= prefixlen <= address.max_prefixlen:
        raise ValueError(f"prefixlen {prefixlen!r}: must be an integer 0..{address.max_prefixlen}")

    ip_entry: dict[str, Any] = {}
    if parse_version(cni_version) < (1, 0, 0):
        ip_entry["version"] = str(address.version)
    ip_entry.update({"interface": 1, "address": f"{address}/{prefixlen}", "gateway": str(gw)})
    default_dst = "0.0.0.0/0" if address.version == 4 else "::/0"
    return {
        "cniVersion": cni_version,
        "interfaces": [
            {"name": host_ifname, "mac": host_mac},
            {"name": ifname, "mac": pod_mac, "sandbox": netns},
        ],
        "ips": [ip_entry],
        "routes": [{"dst": default_dst, "gw": str(gw)}],
        "dns": {},
    }
