"""The kernel side of L7 redirects: policy routing and nftables TPROXY rules (see bpf/lib/proxy.h).

The datapath marks a redirected packet ``proxy_port << 16 | 0x200`` and hands it to this node's IP
stack. Here: an ip rule sends marked packets to table 2004, whose ``local 0.0.0.0/0 dev lo`` route
delivers them locally whatever their destination, and one nftables rule per proxy port (table
``ip membrane_proxy``, prerouting, mangle priority) assigns them to the proxy's socket with TPROXY:
an established socket of the connection first (the accepted client side, or the upstream side bound
to the client's address), else the port's transparent listener. The table is replaced atomically
(``nft -f``) whenever the set of ports changes. Acts on the calling process's network namespace.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable

from membrane.datapath.linux.errors import NetError

MARK_MAGIC_TO_PROXY = 0x0200
MARK_MAGIC_MASK = 0x0F00
ROUTE_TABLE = 2004
RULE_PRIORITY = 9
NFT_TABLE = "membrane_proxy"


def proxy_mark(port: int) -> int:
    return (port << 16) | MARK_MAGIC_TO_PROXY


def ruleset(ports: Iterable[int]) -> str:
    """The nft script making the table hold exactly one TPROXY rule per port."""
    lines = [f"table ip {NFT_TABLE} {{}}", f"delete table ip {NFT_TABLE}", f"table ip {NFT_TABLE} {{",
             "  chain prerouting {", "    type filter hook prerouting priority mangle; policy accept;"]
    for port in sorted(set(ports)):
        lines.append(f"    meta mark {proxy_mark(port):#010x} meta l4proto tcp tproxy to :{port} accept")
        lines.append(f"    meta mark {proxy_mark(port):#010x} meta l4proto udp tproxy to :{port} accept")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def _run(cmd: list[str], stdin: str | None = None, ok_codes: tuple[int, ...] = (0,)) -> str:
    res = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)
    if res.returncode not in ok_codes:
        raise NetError(f"{' '.join(cmd)}: {res.stderr.strip() or res.returncode}")
    return res.stdout


def ensure_routing() -> None:
    """The fwmark rule and the local route of table 2004 (idempotent)."""
    rules = _run(["ip", "-4", "rule", "show"])
    if f"lookup {ROUTE_TABLE}" not in rules:
        _run(["ip", "-4", "rule", "add", "pref", str(RULE_PRIORITY), "fwmark",
              f"{MARK_MAGIC_TO_PROXY:#x}/{MARK_MAGIC_MASK:#x}", "lookup", str(ROUTE_TABLE)])
    _run(["ip", "-4", "route", "replace", "local", "0.0.0.0/0", "dev", "lo", "table", str(ROUTE_TABLE)])


def set_ports(ports: Iterable[int]) -> None:
    """Make the TPROXY rules cover exactly ``ports``."""
    _run(["nft", "-f", "-"], stdin=ruleset(ports))


def remove() -> None:
    _run(["nft", "delete", "table", "ip", NFT_TABLE], ok_codes=(0, 1))
    _run(["ip", "-4", "rule", "del", "pref", str(RULE_PRIORITY)], ok_codes=(0, 2))
    _run(["ip", "-4", "route", "flush", "table", str(ROUTE_TABLE)], ok_codes=(0, 2))
