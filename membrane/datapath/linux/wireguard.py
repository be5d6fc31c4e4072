"""A userspace WireGuard device (wireguard-go) in the calling network namespace, its configuration
through the WireGuard cross-platform configuration protocol (UAPI), keys from ``wg``, and the routes
that steer traffic into it.

There is no kernel WireGuard on this machine: ``wireguard-go -f DEV`` creates a TUN device and serves
its UAPI socket at /var/run/wireguard/DEV.sock. Every lab node names its device ``cilium_wg0``, so each
wireguard-go runs in a private mount namespace where /var/run/wireguard is the node's own directory
(bind mount): the socket appears there, and the agent talks to it by that path. ``setpriv --pdeathsig``
ties the process to the agent: when the agent goes, so does the device (and its routes), and the
blackhole routes behind them keep pod traffic from leaving in clear.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from pyroute2.netlink.exceptions import NetlinkError

from membrane.datapath.linux.links import check_ifname, netlink

RTPROT_WIREGUARD = 212  # our WireGuard routes (`ip route show proto 212`); membrane.datapath.linux.routes uses 211
BLACKHOLE_METRIC = 4096  # behind the device route (metric 0): what is left when the device is gone
UAPI_TIMEOUT = 5.0


class WireguardError(RuntimeError):
    """wireguard-go, wg or the UAPI socket failed; the message says which and why."""


def _run(argv: list[str], stdin: str = "") -> str:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WireguardError(f"{argv[0]}: {exc}") from None
    if done.returncode != 0:
        raise WireguardError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout.strip()


def generate_private_key() -> str:
    return _run(["wg", "genkey"])


def public_key(private_key: str) -> str:
    return _run(["wg", "pubkey"], private_key + "\n")


# ---- UAPI ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PeerState:
    public_key: str  # hex
    endpoint: str = ""
    allowed_ips: tuple[str, ...] = ()
    last_handshake: int = 0  # unix seconds, 0 = never
    rx_bytes: int = 0
    tx_bytes: int = 0


@dataclass(frozen=True)
class DeviceState:
    private_key: str = ""  # hex
    listen_port: int = 0
    peers: dict[str, PeerState] = field(default_factory=dict)  # hex public key -> state


def _uapi(sock_path: str, request: str) -> list[tuple[str, str]]:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(UAPI_TIMEOUT)
            sock.connect(sock_path)
            sock.sendall(request.encode())
            data = b""
            while not data.endswith(b"\n\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        raise WireguardError(f"WireGuard UAPI {sock_path}: {exc}") from None
    pairs = [tuple(line.split("=", 1)) for line in data.decode().splitlines() if "=" in line]
    result = [(k, v) for k, v in pairs]
    errno_value = next((v for k, v in result if k == "errno"), None)
    if errno_value not in ("0", None) or not data:
        raise WireguardError(f"WireGuard UAPI {sock_path}: errno {errno_value or '(no answer)'}")
    return result


def uapi_get(sock_path: str) -> DeviceState:
    device: dict[str, str] = {}
    peers: dict[str, dict[str, object]] = {}
    current: dict[str, object] | None = None
    for key, value in _uapi(sock_path, "get=1\n\n"):
        if key == "public_key":
            current = peers.setdefault(value, {"allowed": []})
        elif current is None:
            device[key] = value
        elif key == "allowed_ip":
            current["allowed"].append(value)  # type: ignore[union-attr]
        else:
            current[key] = value
    return DeviceState(
        device.get("private_key", ""), int(device.get("listen_port", "0") or 0),
        {pub: PeerState(pub, str(p.get("endpoint", "")), tuple(p["allowed"]),  # type: ignore[arg-type]
                        int(str(p.get("last_handshake_time_sec", "0"))), int(str(p.get("rx_bytes", "0"))),
                        int(str(p.get("tx_bytes", "0"))))
         for pub, p in peers.items()})


def uapi_set(sock_path: str, lines: Iterable[str]) -> None:
    _uapi(sock_path, "set=1\n" + "".join(f"{line}\n" for line in lines) + "\n")


def configure_device(sock_path: str, private_key_hex: str, port: int) -> None:
    uapi_set(sock_path, [f"private_key={private_key_hex}", f"listen_port={port}", "replace_peers=true"])


def set_peer(sock_path: str, public_key_hex: str, endpoint: str, allowed_ips: Iterable[str]) -> None:
    uapi_set(sock_path, [f"public_key={public_key_hex}", f"endpoint={endpoint}", "replace_allowed_ips=true",
                         *(f"allowed_ip={cidr}" for cidr in allowed_ips)])


def remove_peer(sock_path: str, public_key_hex: str) -> None:
    uapi_set(sock_path, [f"public_key={public_key_hex}", "remove=true"])


# ---- the process ---------------------------------------------------------------------------------
_LAUNCH = 'mkdir -p /var/run/wireguard && mount --bind "$0" /var/run/wireguard && exec wireguard-go -f "$1"'


class WireguardProcess:
    """One wireguard-go serving ``device``; its UAPI socket in ``sock_dir``."""

    def __init__(self, device: str, sock_dir: str, log_path: str) -> None:
        self.device = check_ifname(device, "WireGuard device")
        self.sock_dir = sock_dir
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> str:
        return f"{self.sock_dir}/{self.device}.sock"

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def start(self, timeout: float = 10.0) -> int:
        """Start wireguard-go (the device must not exist); returns its PID once the socket answers."""
        os.makedirs(self.sock_dir, mode=0o700, exist_ok=True)
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        argv = ["setpriv", "--pdeathsig", "KILL", "--", "unshare", "--mount", "--propagation", "private", "--",
                "sh", "-c", _LAUNCH, self.sock_dir, self.device]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True,
                                         env={**os.environ, "LOG_LEVEL": "error"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise WireguardError(f"wireguard-go for {self.device} exited with {self.proc.returncode} "
                                     f"(see {self.log_path})")
            try:
                uapi_get(self.socket_path)
                return self.proc.pid
            except WireguardError:
                time.sleep(0.05)
        self.stop()
        raise WireguardError(f"wireguard-go for {self.device}: no UAPI socket after {timeout:.0f}s")

    def problem(self) -> str:
        """Why the device is not serving ("" when it is): the process exited or its socket is dead."""
        if self.proc is None:
            return "not started"
        if self.proc.poll() is not None:
            return f"wireguard-go (PID {self.proc.pid}) exited with {self.proc.returncode}"
        try:
            uapi_get(self.socket_path)
        except WireguardError as exc:
            return str(exc)
        return ""

    def wait(self) -> None:
        """Block until the process exits (a watcher thread uses it to react at once)."""
        if self.proc is not None:
            self.proc.wait()

    def stop(self) -> None:
        """Kill the process we started (by its PID) and reap it; the device goes with it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


# ---- routes --------------------------------------------------------------------------------------
def sync_routes(device: str, cidrs: Iterable[str]) -> tuple[int, int]:
    """Each CIDR: a route into ``device`` (when it exists) and a blackhole behind it; ours beyond
    ``cidrs`` removed. Returns (written, removed)."""
    wanted = set(cidrs)
    written = removed = 0
    with netlink("WireGuard routes") as ipr:
        found = ipr.link_lookup(ifname=device)
        oif = found[0] if found else 0
        have: dict[tuple[str, int], int] = {}  # (dst, type) -> oif
        for msg in ipr.get_routes(family=socket.AF_INET, table=254):
            if msg["proto"] != RTPROT_WIREGUARD:
                continue
            dst = f"{msg.get_attr('RTA_DST') or '0.0.0.0'}/{msg['dst_len']}"
            have[(dst, msg["type"])] = msg.get_attr("RTA_OIF") or 0
        try:
            for cidr in sorted(wanted):
                if (cidr, 6) not in have:  # RTN_BLACKHOLE
                    ipr.route("replace", dst=cidr, type="blackhole", priority=BLACKHOLE_METRIC,
                              proto=RTPROT_WIREGUARD)
                    written += 1
                if oif and have.get((cidr, 1)) != oif:  # RTN_UNICAST
                    ipr.route("replace", dst=cidr, oif=oif, scope=253, proto=RTPROT_WIREGUARD)
                    written += 1
            for (dst, kind), route_oif in have.items():
                if dst in wanted:
                    continue
                try:
                    if kind == 6:
                        ipr.route("del", dst=dst, type="blackhole", priority=BLACKHOLE_METRIC, proto=RTPROT_WIREGUARD)
                    else:
                        ipr.route("del", dst=dst, oif=route_oif, scope=253, proto=RTPROT_WIREGUARD)
                    removed += 1
                except NetlinkError as exc:
                    if exc.code != errno.ESRCH:  # gone already (its device went)
                        raise
        except NetlinkError as exc:
            raise WireguardError(f"WireGuard routes: {exc}") from None
    return written, removed
