"""Socket-level load balancing (bpf/sock.c): load the cgroup programs, attach them at the root of
the cgroup-v2 tree through bpf_links pinned under the node's pin directory, and tell them which
network namespaces are this node's pods.

The links are multi-attach (a bpf_link on a cgroup always is), so several nodes and labs attach
side by side; each node's programs act only on the namespaces in its own mb_sock_netns. A link
lives as long as its pin (the fd is closed right after pinning): removing the node's pins
(``remove_pins``, done on agent cleanup and lab delete) detaches them.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from membrane.datapath.bpf.bpf_object import BpfObject
from membrane.datapath.bpf.errors import BpfError
from membrane.datapath.bpf.libbpf import lib
from membrane.datapath.bpf.syscalls import close_fd, obj_pin_replace, prog_info
from membrane.datapath.linux.netns import run_in_netns
from membrane.datapath.loader import find_object
from membrane.datapath.maps.abi import sock_abi_drift
from membrane.datapath.maps.sock_lb import RevSkMap, SockNetnsMap

SOCK_OBJECT = "sock.o"
LINKS_SUBDIR = "links"
# program name -> enum bpf_attach_type
BPF_CGROUP_INET4_CONNECT = 10
BPF_CGROUP_UDP4_SENDMSG = 14
BPF_CGROUP_UDP4_RECVMSG = 19
BPF_CGROUP_INET4_GETPEERNAME = 29
SOCK_PROGRAMS = (
    ("sock4_connect", BPF_CGROUP_INET4_CONNECT),
    ("sock4_sendmsg", BPF_CGROUP_UDP4_SENDMSG),
    ("sock4_recvmsg", BPF_CGROUP_UDP4_RECVMSG),
    ("sock4_getpeername", BPF_CGROUP_INET4_GETPEERNAME),
)
SO_NETNS_COOKIE = 71  # asm-generic/socket.h (Linux 5.14)


def cgroup2_root() -> str:
    """Where the unified (v2) cgroup hierarchy is mounted (/sys/fs/cgroup or, on hybrid hosts,
    /sys/fs/cgroup/unified)."""
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                return fields[1]
    raise BpfError(errno.ENOENT, "socket LB", "no cgroup2 file system is mounted (the socket LB needs cgroup v2)")


def netns_cookie(netns: str | None = None) -> int:
    """The cookie of a network namespace (a name under /run/netns or a path; None: the caller's)."""

    def read() -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            return struct.unpack("=Q", sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))[0]

    return read() if netns is None else run_in_netns(netns, read)


def link_dir(pin_dir: str) -> str:
    return os.path.join(pin_dir, LINKS_SUBDIR)


def attached_links(pin_dir: str) -> list[str]:
    """The program names whose link is pinned for the node."""
    path = link_dir(pin_dir)
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


class SocketLB:
    """``SocketLB(pin_dir).attach()`` once the node's maps exist (NodeDatapath.load() first);
    ``add_netns(cookie, ip)`` / ``remove_address(ip)`` per endpoint; ``detach()``."""

    def __init__(self, pin_dir: str, object_path: str | None = None) -> None:
        self.pin_dir = pin_dir
        self._object_path = object_path
        self._netns: SockNetnsMap | None = None
        self.program_ids: dict[str, int] = {}

    def attach(self) -> None:
        """Load sock.o (sharing the node's pinned maps) and attach its programs at the cgroup-v2
        root, each through a link pinned as ``<pin_dir>/links/<program>``; a link pinned by an
        earlier load is replaced (the new one is attached before the old one goes)."""
        path = self._object_path or find_object(SOCK_OBJECT)
        drift = sock_abi_drift(path)
        if drift:
            raise BpfError(errno.EPROTO, f"{path}: map layouts differ from membrane/datapath/maps", "\n".join(drift))
        cgroup_fd = os.open(cgroup2_root(), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with BpfObject.open(path, pin_root=self.pin_dir) as obj:
                obj.load()
                os.makedirs(link_dir(self.pin_dir), exist_ok=True)
                for name, attach_type in SOCK_PROGRAMS:
                    prog_fd = obj.program_fd(name)
                    self._link(name, prog_fd, cgroup_fd, attach_type)
                    self.program_ids[name] = prog_info(prog_fd).id
        finally:
            os.close(cgroup_fd)

    def _link(self, name: str, prog_fd: int, cgroup_fd: int, attach_type: int) -> None:
        link_fd = lib().bpf_link_create(prog_fd, cgroup_fd, attach_type, None)
        if link_fd < 0:
            raise BpfError(-link_fd, f"attach {name} to the cgroup-v2 root")
        try:
            obj_pin_replace(link_fd, os.path.join(link_dir(self.pin_dir), name))
        finally:
            close_fd(link_fd)  # the pin holds the link from now on

    def detach(self) -> bool:
        """Unpin (and so detach) the node's links; False if none was pinned."""
        names = attached_links(self.pin_dir)
        for name in names:
            os.unlink(os.path.join(link_dir(self.pin_dir), name))
        if os.path.isdir(link_dir(self.pin_dir)):
            os.rmdir(link_dir(self.pin_dir))
        return bool(names)

    @property
    def netns(self) -> SockNetnsMap:
        if self._netns is None:
            self._netns = SockNetnsMap.open(self.pin_dir)
        return self._netns

    def add_endpoint(self, netns: str, ipv4: str) -> int:
        """Translate the sockets of the endpoint's network namespace from now on; returns its cookie."""
        cookie = netns_cookie(netns)
        self.netns.add(cookie, ipv4)
        return cookie

    def remove_endpoint(self, ipv4: str) -> int:
        return self.netns.remove_address(ipv4)

    def reverse_entries(self) -> list[tuple[int, str, int, str, int]]:
        with RevSkMap.open(self.pin_dir) as rev:
            return rev.items()

    def close(self) -> None:
        if self._netns is not None:
            self._netns.close()
            self._netns = None
