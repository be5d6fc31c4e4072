"""Tests of membrane.store; most start a real etcd per module (tests/etcd_fixture.py)."""
