"""ListeningPorts: readiness ports read every pass until ready, then at most every ``recheck`` seconds,
and at once when a container is a new process."""

from __future__ import annotations

from membrane.lab.port_probe import ListeningPorts
from membrane.lab.processes import ProcRecord
from membrane.lab.runtime import Sandbox

POD = {"spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]}}


def _probe(answers: list[set[int]]) -> tuple[ListeningPorts, list[float], list[int]]:
    now = [0.0]
    reads: list[int] = []

    def read(_sb: Sandbox) -> set[int]:
        reads.append(1)
        return answers[min(len(reads) - 1, len(answers) - 1)]

    return ListeningPorts(read, recheck=2.0, clock=lambda: now[0]), now, reads


def _sandbox(pid: int) -> Sandbox:
    return Sandbox("default", "web", "uid-1", "n1", "netns", "cid", containers={"web": ProcRecord(pid, 1)})


def test_not_ready_is_read_on_every_pass() -> None:
    probe, _now, reads = _probe([set(), set(), {80}])
    sb = _sandbox(10)
    assert [probe.get(POD, sb) for _ in range(3)] == [set(), set(), {80}]
    assert len(reads) == 3


def test_ready_is_read_again_only_after_recheck_or_a_new_container() -> None:
    probe, now, reads = _probe([{80}, set(), set()])
    sb = _sandbox(10)
    assert probe.get(POD, sb) == {80}
    now[0] = 1.9
    assert probe.get(POD, sb) == {80} and len(reads) == 1  # within recheck: the last answer
    now[0] = 2.1
    assert probe.get(POD, sb) == set() and len(reads) == 2  # stopped listening: seen at the recheck
    probe2, now2, reads2 = _probe([{80}, set()])
    assert probe2.get(POD, sb) == {80}
    assert probe2.get(POD, _sandbox(11)) == set() and len(reads2) == 2  # restarted container: read at once
    probe2.forget("uid-1")
    assert probe2.get(POD, _sandbox(11)) == set() and len(reads2) == 3
