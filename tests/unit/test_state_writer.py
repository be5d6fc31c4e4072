"""StateWriter: newest snapshot wins, waiters return once theirs (or a newer one) is written, and a
failed write reaches exactly the waiters whose change it carried."""

from __future__ import annotations

import threading

import pytest

from membrane.agent.state_writer import StateWriter


class Disk:
    """Records what was written; ``gate`` holds the writer inside a write until the test releases it."""

    def __init__(self) -> None:
        self.written: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail: set[int] = set()

    def write(self, snapshot: int) -> None:
        self.entered.set()
        self.gate.wait(5)
        if snapshot in self.fail:
            raise OSError(28, f"no space left writing {snapshot}")
        self.written.append(snapshot)


def test_wait_returns_once_the_snapshot_is_written() -> None:
    disk = Disk()
    writer: StateWriter[int] = StateWriter(disk.write)
    writer.wait(writer.submit(1))
    assert disk.written == [1]
    writer.close()


def test_snapshots_queued_during_a_write_collapse_into_the_newest() -> None:
    disk = Disk()
    writer: StateWriter[int] = StateWriter(disk.write)
    disk.gate.clear()
    first = writer.submit(10)
    assert disk.entered.wait(5)  # the writer is inside the write of 10
    numbers = [writer.submit(v) for v in (11, 12, 13)]
    disk.gate.set()
    for number in numbers:
        writer.wait(number)
    writer.wait(first)
    assert disk.written == [10, 13]  # 11 and 12 were never written on their own: 13 contains them
    writer.close()


def test_a_failed_write_reaches_its_waiters_and_a_later_write_clears_it() -> None:
    disk = Disk()
    disk.fail = {2}
    writer: StateWriter[int] = StateWriter(disk.write)
    writer.wait(writer.submit(1))
    failed = writer.submit(2)
    with pytest.raises(OSError, match="writing 2"):
        writer.wait(failed)
    writer.wait(1)  # an older snapshot that was written stays fine
    writer.wait(writer.submit(3))
    writer.wait(failed)  # 3 is newer than 2 and on disk: 2's change is too
    assert disk.written == [1, 3]
    writer.close()


def test_close_writes_what_is_queued_and_refuses_more() -> None:
    disk = Disk()
    writer: StateWriter[int] = StateWriter(disk.write)
    disk.gate.clear()
    writer.submit(1)
    assert disk.entered.wait(5)
    writer.submit(2)
    threading.Timer(0.05, disk.gate.set).start()
    writer.close()
    assert disk.written == [1, 2]
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit(3)
