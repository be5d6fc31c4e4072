"""The churn benchmark's agent CPU reading (bench.agent_cpu): utime + stime of a live process, None when gone."""

from __future__ import annotations

import os
import time

from bench.agent_cpu import cpu_seconds


def test_cpu_seconds_grows_with_work_and_is_none_for_a_gone_process() -> None:
    before = cpu_seconds(os.getpid())
    assert before is not None
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    after = cpu_seconds(os.getpid())
    assert after is not None and after >= before + 0.03
    assert cpu_seconds(2**22 + 12345) is None  # above pid_max's usual range: no such process
