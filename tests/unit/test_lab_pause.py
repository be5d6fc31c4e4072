"""The lab runtime's pod sandbox made by the compiled pause (``lab/membrane-pause.c``) against the shell
one it replaces (``ip netns add`` + ``ip netns exec … unshare --uts … sleep``): the same namespaces as seen
from inside (hostname, /etc files, sysfs of the pod's netns) and from outside (/run/netns/<name> is the
pause's netns), a retried start joins the existing netns, and a start that fails says why and leaves no
process. Real namespaces: needs root and ``make setup``'s binary."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from membrane.lab import runtime as rt
from membrane.lab.processes import is_alive, stop

PAUSE = os.path.join(os.path.dirname(sys.executable), "membrane-pause")
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root"),
    pytest.mark.skipif(not os.access(PAUSE, os.X_OK), reason="membrane-pause not built (make setup)"),
]
INSIDE = "hostname; cat /etc/resolv.conf /etc/hosts; ls /sys/class/net; readlink /proc/self/ns/net"


@pytest.fixture()
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[rt.Runtime]:
    lab = f"tpause{secrets.token_hex(3)}"
    made: list[rt.Sandbox] = []
    r = rt.Runtime(lab)
    original = r.create_sandbox

    def tracked(sb: rt.Sandbox, resolv_conf: str, dns_search: str = "") -> None:
        made.append(sb)
        original(sb, resolv_conf, dns_search)

    monkeypatch.setattr(r, "create_sandbox", tracked)
    try:
        yield r
    finally:
        for sb in made:
            if sb.pause is not None:
                stop(sb.pause, timeout=2)
            subprocess.run(["ip", "netns", "del", sb.netns], capture_output=True)
            shutil.rmtree(f"/etc/netns/{sb.netns}", ignore_errors=True)
        shutil.rmtree(f"/run/membrane/{lab}", ignore_errors=True)


def _sandbox(r: rt.Runtime, name: str) -> rt.Sandbox:
    sb = r.new_sandbox({"metadata": {"namespace": "default", "name": name, "uid": secrets.token_hex(8)}}, "n1")
    r.create_sandbox(sb, f"nameserver 10.96.0.10\nsearch {name}.example\n")
    return sb


def _inside(sb: rt.Sandbox) -> list[str]:
    assert sb.pause is not None
    out = subprocess.run(["nsenter", "-t", str(sb.pause.pid), "--net", "--uts", "--mount", "--", "sh", "-c", INSIDE],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    return out


def test_compiled_pause_makes_the_sandbox_the_shell_pause_made(runtime: rt.Runtime,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBRANE_LAB_PAUSE", "shell")
    shell = _sandbox(runtime, "web-a")
    monkeypatch.delenv("MEMBRANE_LAB_PAUSE")
    compiled = _sandbox(runtime, "web-b")
    assert runtime.pause_ready(compiled)  # ready when create_sandbox returns (it waited for the byte)
    deadline = time.monotonic() + 10
    while not runtime.pause_ready(shell):  # the shell one gets there on its own time: the kubelet polls
        assert time.monotonic() < deadline, "shell pause never ready"
        time.sleep(0.01)
    assert os.readlink(f"/proc/{compiled.pause.pid}/exe") == os.path.realpath(PAUSE)  # type: ignore[union-attr]
    got_shell, got_compiled = _inside(shell), _inside(compiled)
    # same shape: hostname, resolv.conf, hosts (names differ by the pod), only lo in sysfs, its own netns
    assert got_shell[0] == "web-a" and got_compiled[0] == "web-b"
    assert [line.replace("web-a", "X") for line in got_shell[1:-1]] == \
        [line.replace("web-b", "X") for line in got_compiled[1:-1]]
    assert "lo" in got_compiled and "search web-b.example" in got_compiled
    for sb, lines in ((shell, got_shell), (compiled, got_compiled)):
        assert os.stat(sb.netns_path).st_ino == os.stat(f"/proc/{sb.pause.pid}/ns/net").st_ino  # type: ignore[union-attr]
        assert lines[-1] != os.readlink("/proc/self/ns/net")
    # SIGTERM ends it, as it ended sleep
    assert compiled.pause is not None
    stop(compiled.pause, timeout=2)
    assert not is_alive(compiled.pause)


def test_a_retried_start_joins_the_existing_netns(runtime: rt.Runtime) -> None:
    first = _sandbox(runtime, "retry")
    assert first.pause is not None
    inode = os.stat(first.netns_path).st_ino
    stop(first.pause, timeout=2)
    second = _sandbox(runtime, "retry")
    assert second.pause is not None and os.stat(f"/proc/{second.pause.pid}/ns/net").st_ino == inode


def test_a_failed_start_says_why_and_leaves_no_process(runtime: rt.Runtime) -> None:
    name = f"bad{secrets.token_hex(3)}"
    sb = runtime.new_sandbox({"metadata": {"namespace": "default", "name": name, "uid": secrets.token_hex(8)}}, "n1")
    os.makedirs("/run/netns", exist_ok=True)
    with open(sb.netns_path, "w"):  # a plain file where the netns should be: setns fails
        pass
    try:
        before = set(os.listdir("/proc"))
        with pytest.raises(RuntimeError, match=r"pod sandbox did not start: membrane-pause: setns /run/netns/"):
            runtime.create_sandbox(sb, "nameserver 10.96.0.10\n")
        assert sb.pause is None
        for pid in set(os.listdir("/proc")) - before:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    assert b"membrane-pause" not in fh.read()
            except FileNotFoundError:
                continue
    finally:
        os.unlink(sb.netns_path)
        shutil.rmtree(f"/etc/netns/{sb.netns}", ignore_errors=True)


def _netns_mounts(pid: int) -> list[str]:
    """Mount points under /run/netns in the mount namespace of ``pid``."""
    with open(f"/proc/{pid}/mountinfo") as fh:
        return [line.split()[4] for line in fh if line.split()[4].startswith("/run/netns")]


def test_a_sandbox_holds_no_copy_of_other_pods_netns_mounts(runtime: rt.Runtime) -> None:
    """Each pod's mount namespace drops /run/netns: no copies of the earlier pods' netns bind mounts, and
    none of the later ones propagated into it (that made every start and teardown O(pods))."""
    first = _sandbox(runtime, "early")
    second = _sandbox(runtime, "late")
    assert first.pause is not None and second.pause is not None
    assert any(m == second.netns_path for m in _netns_mounts(os.getpid()))  # the host still has both
    assert _netns_mounts(first.pause.pid) == [] and _netns_mounts(second.pause.pid) == []
    # the namespaces themselves are unchanged: the host's /run/netns/<name> is the pause's netns
    for sb in (first, second):
        assert os.stat(sb.netns_path).st_ino == os.stat(f"/proc/{sb.pause.pid}/ns/net").st_ino  # type: ignore[union-attr]
