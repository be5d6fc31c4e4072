"""Lab tests need root, bpffs, etcd and the compiled BPF objects; each lab is removed afterwards."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.lab.harness import Lab, unique_lab

REQUIRED = ["ip", "nsenter", "unshare", "curl", "ping", "/usr/bin/etcd"]


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "lab tests need root"
    missing = [t for t in REQUIRED if not shutil.which(t) and not os.path.exists(t)]
    if missing:
        return f"missing tools: {', '.join(missing)} (run make setup)"
    return None


@pytest.fixture(scope="session")
def lab_requirements() -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)


def make_lab(*create_args: str) -> Iterator[Lab]:
    lab = Lab(unique_lab())
    try:
        lab.create(*create_args)
        yield lab
    finally:
        lab.delete()
        left = lab.leftovers()
        assert not left, f"lab delete left things behind: {left}"


@pytest.fixture(scope="module")
def lab(lab_requirements: None) -> Iterator[Lab]:
    yield from make_lab()
