"""``membrane bpf ipcache list`` rows in the shape of ``cilium-dbg bpf ipcache list`` (cilium-semantics §11.5).

    IP PREFIX/ADDRESS   IDENTITY
    10.0.2.0/24         identity=6 encryptkey=0 tunnelendpoint=192.168.1.12 flags=<none>
    0.0.0.0/0           identity=2 encryptkey=0 tunnelendpoint=0.0.0.0 flags=<none>

The caller aligns the columns (the CLI's tabwriter, cilium-dbg settings).
"""

from __future__ import annotations

from collections.abc import Iterable

from membrane.ipcache.cache import IPCacheEntry

HEADER = ("IP PREFIX/ADDRESS", "IDENTITY")


def entry_value(entry: IPCacheEntry, flags: Iterable[str] = ()) -> str:
    """``identity=<id> encryptkey=<k> tunnelendpoint=<ip> flags=<…>`` (no tunnel: the zero address)."""
    zero = "0.0.0.0" if entry.prefix.version == 4 else "::"
    names = ",".join(flags) or "<none>"
    return (f"identity={entry.identity} encryptkey={entry.encrypt_key} "
            f"tunnelendpoint={entry.tunnel_endpoint or zero} flags={names}")


def list_rows(entries: Iterable[IPCacheEntry], header: bool = True) -> list[tuple[str, str]]:
    """(prefix, value) rows, header first; entries in the order given (an IPCache iterates sorted)."""
    rows = [HEADER] if header else []
    rows.extend((str(e.prefix), entry_value(e)) for e in entries)
    return rows


def render_list(entries: Iterable[IPCacheEntry], header: bool = True) -> str:
    """The rows as tab-separated lines, ready for a tabwriter (cilium-dbg: minwidth 5, padding 3)."""
    return "".join(f"{prefix}\t{value}\n" for prefix, value in list_rows(entries, header))
