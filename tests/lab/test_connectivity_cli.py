"""``membrane connectivity test`` on a fresh 3-node lab: cilium-cli's summary with ≥ 30 tests passing,
the rest skipped for a named missing feature, a JUnit report, Hubble's flows agreeing with every pod-to-pod action,
``--test`` filters, and a failure when a stray policy breaks what a test expects."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from tests.lab.conftest import make_lab
from tests.lab.harness import Lab

SUMMARY = re.compile(r"✅ \[cilium-test-1\] All (\d+) tests \((\d+) actions\) successful, (\d+) tests skipped")
STRAY = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: stray-deny, namespace: cilium-test-1}
spec:
  endpointSelector: {matchLabels: {name: echo-other-node}}
  ingress: [{fromEntities: [all]}]  # a deny-only policy would also turn on default deny
  ingressDeny: [{fromEndpoints: [{matchLabels: {name: client}}]}]
"""


@pytest.fixture(scope="module")
def lab(lab_requirements: None) -> Iterator[Lab]:
    yield from make_lab()


def test_full_suite_passes_with_named_skips(lab: Lab, tmp_path: object) -> None:
    junit = f"{tmp_path}/junit.xml"
    proc = lab.run("connectivity", "test", "--junit-file", junit, check=False, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
    match = SUMMARY.search(proc.stdout)
    assert match, proc.stdout[-2000:]
    tests, actions, skipped = map(int, match.groups())
    assert tests >= 30 and actions >= 200
    assert proc.stdout.count("  [.] Action [") == actions
    assert "Flow validation [" not in proc.stdout, "Hubble's flows disagree with an action"
    skips = re.findall(r"Skipping test \[([\w-]+)\] \[\d+/\d+\] \((.*)\)", proc.stdout)
    assert len(skips) == skipped and all(why.startswith("needs ") for _name, why in skips)
    assert ("local-redirect-policy", "needs local redirect policy") in skips
    l7 = {"echo-ingress-l7", "echo-ingress-l7-named-port", "client-egress-l7", "client-egress-l7-named-port",
          "client-egress-l7-method",
          "client-egress-l7-set-header", "client-egress-tls-sni", "client-egress-tls-sni-denied"}
    assert not l7 & {name for name, _why in skips}
    assert all(f"Test [{name}]" in proc.stdout for name in l7)
    assert "expected exit code 35" in proc.stdout and "expected exit code 22" in proc.stdout  # TLS reset, HTTP 403
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert (int(suite.get("tests", "0")), suite.get("failures"), int(suite.get("skipped", "0"))) == (
        tests + skipped, "0", skipped)
    assert not lab.get_json("cnp", "-n", "cilium-test-1"), "policies left behind"


def test_filters_and_a_failing_test(lab: Lab) -> None:
    proc = lab.run("connectivity", "test", "--test", "^pod-to", "--test", "!hostport", "--flow-validation", "strict",
                   timeout=300)
    assert "All 1 tests" in proc.stdout, proc.stdout[-1500:]  # pod-to-service alone
    assert "Skipping test [pod-to-hostport]" in proc.stdout and "(skipped by user)" in proc.stdout
    lab.apply(STRAY)
    try:
        proc = lab.run("connectivity", "test", "--test", "^pod-to-service$", check=False, timeout=300)
    finally:
        lab.run("delete", "cnp", "stray-deny", "-n", "cilium-test-1")
    assert proc.returncode == 1, proc.stdout[-1500:]
    assert "❌ [cilium-test-1] 1/1 tests failed (1/4 actions)" in proc.stdout, proc.stdout[-1500:]
    bad = lab.run("connectivity", "test", "--test", "(", check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("error: --test: invalid regular expression")


def test_perf_matrix(lab: Lab) -> None:
    import subprocess

    proc = lab.run("connectivity", "perf", "--duration", "1", timeout=300)
    rows = [line.split("|") for line in proc.stdout.split("Summary [cilium-test-1]:", 1)[1].splitlines()[2:]]
    cells = {(r[0].strip(), r[1].strip(), r[2].strip()): r[4].strip() for r in rows if len(r) == 5}
    assert len(cells) == 8, proc.stdout
    for (_scenario, _node, test), value in cells.items():
        number, unit = value.split()
        assert float(number) > 0 and unit == ("OP/s" if test == "TCP_RR" else "Mb/s"), value
    left = subprocess.run(["pgrep", "-f", "membrane.cli.perf_rr"], capture_output=True, text=True).stdout
    assert not left.strip(), f"perf servers left running: {left}"
