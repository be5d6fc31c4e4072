"""Exits of the lab's container processes as events, not polls.

The lab kubelet used to learn that a container had exited by reading ``/proc/<pid>/stat`` of every
container at least once a second (a PLEG relist): with 1 000 pods that was 1 000 reads a second for
the whole of a burst, so each pod's share grew with the pod count. Here each watched process has a
pidfd (readable once the process has exited) registered in one epoll: a pass asks which ones exited,
one system call however many pods there are. A process that cannot be watched (no pidfd, out of
descriptors, already gone) is reported as such, and the kubelet keeps polling it.
"""

from __future__ import annotations

import os
import select
import threading

from membrane.lab.processes import ProcRecord, is_alive


class ExitWatch:
    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._lock = threading.Lock()
        self._fds: dict[int, tuple[str, tuple[int, int]]] = {}  # pidfd -> (owner, (pid, start))
        self._by_proc: dict[tuple[int, int], int] = {}  # (pid, start) -> pidfd
        self._by_owner: dict[str, set[int]] = {}

    def watch(self, owner: str, rec: ProcRecord) -> bool:
        """Report ``rec``'s exit under ``owner`` (a pod uid); False if it cannot be watched (gone already,
        its PID reused, no pidfd): the caller then polls it as before."""
        proc = (rec.pid, rec.start)
        with self._lock:
            if proc in self._by_proc:
                return True
            try:
                fd = os.pidfd_open(rec.pid)
            except OSError:
                return False
            # The pidfd is the process that had the PID when it was opened; the recorded one still has it
            # after, so both are the same process (a PID is not reused while its process lives).
            if not is_alive(rec):
                os.close(fd)
                return False
            self._epoll.register(fd, select.EPOLLIN)
            self._fds[fd] = (owner, proc)
            self._by_proc[proc] = fd
            self._by_owner.setdefault(owner, set()).add(fd)
            return True

    def exited(self) -> set[str]:
        """Owners of watched processes that exited since the last call (each exit reported once)."""
        with self._lock:
            owners = set()
            for fd, _mask in self._epoll.poll(0):
                owners.add(self._fds[fd][0])
                self._close(fd)
            return owners

    def forget(self, owner: str) -> None:
        """Stop watching ``owner``'s processes (its pod is gone)."""
        with self._lock:
            for fd in list(self._by_owner.get(owner, ())):
                self._close(fd)

    def _close(self, fd: int) -> None:
        owner, proc = self._fds.pop(fd)
        self._by_proc.pop(proc, None)
        fds = self._by_owner.get(owner)
        if fds is not None:
            fds.discard(fd)
            if not fds:
                del self._by_owner[owner]
        self._epoll.unregister(fd)
        os.close(fd)

    def __len__(self) -> int:
        return len(self._fds)
