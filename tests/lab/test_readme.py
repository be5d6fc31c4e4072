"""README truth: every ``$ membrane …`` line of README.md runs as written, in order, on a lab it creates itself.

``lab create``, ``apply -f examples/demo.yaml`` and the ``wait`` lines after it are README lines too,
so the lab here is what ``make demo`` leaves behind. ``--follow`` lines run for a few seconds and must
still be running.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.lab.harness import MEMBRANE, Lab, unique_lab
from tests.readme_commands import ROOT, readme_commands

# What some lines must print, beyond exiting 0.
EXPECT = {
    "exec curl-pod -- curl -s http://webpod/": "Hostname: webpod-",
    "exec curl-pod -- nslookup webpod": "webpod.default.svc.cluster.local",
    "lab exec world -- curl -s http://192.168.10.101:30080/": "Hostname: webpod-",
    "service list --node k8s-w1": ":30080/TCP",
    "connectivity test --test ^no-policies": "✅ [cilium-test-1] All 3 tests (37 actions) successful, 57 tests skipped",
    "get all": "deployment.apps/webpod",
    "describe service webpod": "NodePort:                 http  30080/TCP",
    "get rs": "webpod-",
    "rollout status deployment/webpod --timeout=90s": 'deployment "webpod" successfully rolled out',
    "wait --for=condition=Ready pod/curl-pod --timeout=90s": "pod/curl-pod condition met",
}


@pytest.mark.usefixtures("lab_requirements")
def test_every_readme_command_runs_as_written() -> None:
    lab = Lab(unique_lab("rd"))
    commands = readme_commands()
    assert commands[0] == ["lab", "create"]
    failures: list[str] = []
    try:
        for argv in commands:
            line = " ".join(argv)
            cmd = [MEMBRANE, "--lab", lab.name, *argv]
            if "--follow" in argv or "-f" in argv and argv[0] == "logs":
                proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                try:
                    _out, err = proc.communicate(timeout=3)
                    failures.append(f"{line}: ended ({proc.returncode}) instead of following: {err.strip()}")
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()
                continue
            proc = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True, timeout=600)
            if proc.returncode != 0:
                failures.append(f"{line}: exit {proc.returncode}: {proc.stderr.strip()[:400]}")
            elif line in EXPECT and EXPECT[line] not in proc.stdout:
                failures.append(f"{line}: no {EXPECT[line]!r} in:\n{proc.stdout[:600]}")
        assert not failures, "README commands that do not run as written:\n" + "\n".join(failures)
        assert set(EXPECT) <= {" ".join(c) for c in commands}, "an expectation names a line the README lost"
    finally:
        lab.delete()
        left = lab.leftovers()
        assert not left, f"lab delete left things behind: {left}"

