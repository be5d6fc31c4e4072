"""Shared fixtures of the store tests: a real etcd per module, a client, and a private key prefix."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from membrane.store.etcd import EtcdClient
from tests.etcd_fixture import EtcdServer, etcd_server  # noqa: F401  (module-scoped fixture, shared here)


@pytest.fixture
def client(etcd_server: EtcdServer) -> Iterator[EtcdClient]:  # noqa: F811
    c = EtcdClient(etcd_server.endpoint)
    yield c
    c.close()


@pytest.fixture
def ns() -> str:
    """A key prefix of our own, so tests sharing one etcd do not see each other's keys."""
    return f"/t/{uuid.uuid4().hex[:8]}/"
