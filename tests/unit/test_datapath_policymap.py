"""Pure parts of the policy, ipcache and conntrack map wrappers (no root, no kernel)."""

from __future__ import annotations

import random

import pytest

from membrane.datapath.maps.conntrack import (
    CT_EGRESS,
    CT_F_RX_CLOSING,
    CT_F_TX_CLOSING,
    CtEntry,
    CtKey,
    ct_row,
)
from membrane.datapath.maps.ipcache import IpcacheEntry, ipcache_key
from membrane.datapath.maps.policy import (
    DIR_EGRESS,
    DIR_INGRESS,
    PolicyKey,
    PolicyRule,
    PolicySlot,
    Verdict,
    desired_slots,
    plan_sync,
    port_blocks,
)
from membrane.model.errors import ValidationError


def _covered(blocks: list[tuple[int, int]]) -> list[int]:
    return [port for start, bits in blocks for port in range(start, start + (1 << (16 - bits)))]


@pytest.mark.parametrize(("first", "last", "count"), [(80, 80, 1), (0, 65535, 1), (8000, 8100, 4), (1, 65535, 16),
                                                      (1024, 2047, 1), (1023, 2048, 3)])
def test_port_blocks_cover_the_range_exactly(first: int, last: int, count: int) -> None:
    blocks = port_blocks(first, last)
    assert _covered(blocks) == list(range(first, last + 1))
    assert len(blocks) == count
    for start, bits in blocks:  # aligned: the low bits beyond the prefix are 0
        assert start & ((1 << (16 - bits)) - 1) == 0


def test_port_blocks_random_ranges() -> None:
    rng = random.Random(7)
    for _ in range(300):
        first = rng.randint(0, 65535)
        last = rng.randint(first, min(65535, first + rng.choice([0, 5, 300, 70000])))
        blocks = port_blocks(first, last)
        assert len(blocks) <= 30
        assert _covered(blocks) == list(range(first, last + 1))


@pytest.mark.parametrize(("first", "last"), [(10, 9), (-1, 5), (0, 65536)])
def test_port_blocks_reject_bad_ranges(first: int, last: int) -> None:
    with pytest.raises(ValidationError):
        port_blocks(first, last)


def test_rule_slots() -> None:
    assert PolicyRule(1, DIR_INGRESS).slots() == [PolicySlot(1, DIR_INGRESS, 0, 0, 0, 0)]
    assert PolicyRule(1, DIR_INGRESS, 5, 6).slots() == [PolicySlot(1, DIR_INGRESS, 5, 6, 0, 0)]
    assert PolicyRule(1, DIR_EGRESS, 5, 6, 443).slots() == [PolicySlot(1, DIR_EGRESS, 5, 6, 443, 16)]
    assert PolicyRule(1, DIR_EGRESS, 5, 17, 0, 65535).slots() == [PolicySlot(1, DIR_EGRESS, 5, 17, 0, 0)]
    assert PolicySlot(1, 1, 0, 6, 8064, 11).port_range == (8064, 8095)


@pytest.mark.parametrize("kwargs", [
    {"direction": 3}, {"protocol": 0, "port": 80}, {"protocol": 6, "port": 90, "end_port": 80},
    {"ep_id": 70000}, {"identity": -1}, {"port": True, "protocol": 6},
])
def test_bad_rules_are_refused(kwargs: dict) -> None:
    args = {"ep_id": 1, "direction": DIR_INGRESS} | kwargs
    with pytest.raises(ValidationError):
        PolicyRule(**args)


def test_slot_key_is_in_network_order() -> None:
    key = PolicySlot(7, DIR_INGRESS, 1001, 6, 80, 16).to_c()
    assert bytes(key) == bytes.fromhex("0700" "01" "06" "e9030000" "0050" "10" "00")
    assert PolicySlot.from_c(PolicyKey.from_buffer_copy(bytes(key))) == PolicySlot(7, DIR_INGRESS, 1001, 6, 80, 16)


def test_a_deny_wins_a_shared_slot() -> None:
    allow = PolicyRule(1, DIR_INGRESS, 5, 6, 80)
    deny = PolicyRule(1, DIR_INGRESS, 5, 6, 80, deny=True)
    assert desired_slots([deny, allow]) == desired_slots([allow, deny]) == {allow.slots()[0]: Verdict(deny=True)}


def test_plan_sync_writes_only_differences() -> None:
    keep, change, drop = (PolicySlot(1, DIR_INGRESS, i, 6, 80, 16) for i in (1, 2, 3))
    other_ep = PolicySlot(2, DIR_INGRESS, 1, 6, 80, 16)
    new = PolicySlot(1, DIR_INGRESS, 4, 0, 0, 0)
    current = {keep: Verdict(), change: Verdict(), drop: Verdict(), other_ep: Verdict()}
    desired = {keep: Verdict(), change: Verdict(deny=True), new: Verdict()}
    assert plan_sync(current, desired) == ({new: Verdict()}, {change: Verdict(deny=True)}, [drop, other_ep])
    assert plan_sync(current, desired, ep_ids=[1])[2] == [drop]


def test_ipcache_entry_text_and_key() -> None:
    entry = IpcacheEntry(6, "192.168.1.12")
    assert entry.describe() == "identity=6 encryptkey=0 tunnelendpoint=192.168.1.12 flags=<none>"
    assert IpcacheEntry.from_c(entry.to_c()) == entry
    key = ipcache_key("10.0.2.0/24")
    assert bytes(key) == bytes([24, 0, 0, 0, 10, 0, 2, 0])
    with pytest.raises(ValidationError):
        ipcache_key("10.0.2.1/24")
    with pytest.raises(ValidationError):
        IpcacheEntry(0)


def test_ct_row_text() -> None:
    key = CtKey.from_buffer_copy(bytes([10, 0, 0, 1, 10, 0, 1, 2]) + (41234).to_bytes(2, "big")
                                 + (80).to_bytes(2, "big") + bytes([6, CT_EGRESS, 0, 0]))
    entry = CtEntry(tx_packets=3, tx_bytes=180, rx_packets=2, rx_bytes=120, lifetime=1100, src_identity=1001,
                    flags=CT_F_TX_CLOSING | CT_F_RX_CLOSING, tx_flags_seen=0x13, rx_flags_seen=0x12)
    row = ct_row(key, entry, now=1000)
    assert row.closing and row.expires_in == 100
    assert row.describe() == (
        "TCP OUT 10.0.0.1:41234 -> 10.0.1.2:80 expires=100 RxPackets=2 RxBytes=120 RxFlagsSeen=0x12 "
        "TxPackets=3 TxBytes=180 TxFlagsSeen=0x13 Flags=TxClosing|RxClosing SourceSecurityID=1001")
