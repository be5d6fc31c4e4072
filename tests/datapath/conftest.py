"""Fixtures for datapath tests: unique namespaces, pins and processes, removed also on failure.

Tests marked ``root`` need root, bpffs at /sys/fs/bpf and network namespaces; they are skipped
with the reason when that is missing. Everything a test makes is named ``dpt-<run id>-…`` and
removed in the fixtures' teardown; processes are killed by the PID we started.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest

from membrane.datapath.linux.netns import create_netns, delete_netns
from membrane.datapath.loader import NodeDatapath, compile_object, find_object, remove_pins
from membrane.lab.paths import BPFFS_ROOT
from tests.datapath.netlab import NodeLab


def _root_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, BPF)"
    with open("/proc/self/mounts") as mounts:
        if not any(line.split()[1:3] == ["/sys/fs/bpf", "bpf"] for line in mounts):
            return "bpffs is not mounted at /sys/fs/bpf (run `make bpffs`)"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is not None:
        problem = _root_problem()
        if problem:
            pytest.skip(problem)


@pytest.fixture(scope="session")
def lxc_object(tmp_path_factory: pytest.TempPathFactory) -> str:
    try:
        return find_object("lxc")
    except FileNotFoundError:
        return compile_object("lxc", str(tmp_path_factory.mktemp("bpf")))


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def pin_dir(run_id: str) -> Iterator[str]:
    """A node pin directory of a lab that exists only for this test."""
    lab_dir = f"{BPFFS_ROOT}/dpt-{run_id}"
    yield f"{lab_dir}/node"
    remove_pins(lab_dir)


@pytest.fixture
def make_netns(run_id: str) -> Iterator[Callable[[str], str]]:
    """``make_netns("a")`` creates ``dpt-<run id>-a``; all are deleted at teardown."""
    made: list[str] = []

    def make(suffix: str) -> str:
        name = f"dpt-{run_id}-{suffix}"
        create_netns(name)
        made.append(name)
        return name

    yield make
    for name in reversed(made):
        delete_netns(name)


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen]]:
    """Start a process; at teardown kill every process started here, by its PID."""
    started: list[subprocess.Popen] = []

    def start(cmd: list[str], **kwargs: object) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


@pytest.fixture
def datapath(pin_dir: str, lxc_object: str) -> Iterator[NodeDatapath]:
    dp = NodeDatapath(pin_dir, object_path=lxc_object)
    dp.load()
    yield dp
    dp.close()


@pytest.fixture
def node(make_netns: Callable[[str], str], datapath: NodeDatapath) -> NodeLab:
    """A node namespace with the datapath loaded; add pods with ``node.add_pod(name, ip)``.

    ip_forward is 0 in the node: the kernel cannot forward between pods, so any pod-to-pod packet
    that arrives went through from_container's redirect. ARP replies from the node's kernel are
    off on the pod veths too (arp_ignore=8), so a resolved router MAC came from the BPF responder.
    """
    return NodeLab(make_netns, datapath)
