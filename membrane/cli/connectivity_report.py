"""Results of ``membrane connectivity test``: cilium-cli's summary lines and a JUnit XML report."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from membrane.cli.connectivity_policies import NAMESPACE


@dataclass
class ActionResult:
    name: str  # test/scenario/index
    text: str  # "src -> dst"
    expect_ok: bool
    ok: bool  # the action saw what it had to
    detail: str = ""
    seconds: float = 0.0


@dataclass
class TestResult:
    name: str
    skipped: str = ""  # why, for a skipped test
    actions: list[ActionResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[ActionResult]:
        return [a for a in self.actions if not a.ok]


def summary(results: list[TestResult]) -> list[str]:
    """The closing lines: ``✅ [ns] All N tests (M actions) successful, K tests skipped, …`` or the failures."""
    ran = [r for r in results if not r.skipped]
    skipped = len(results) - len(ran)
    actions = sum(len(r.actions) for r in ran)
    failed = [r for r in ran if r.failed]
    lines = [f"📋 Test Report [{NAMESPACE}]"]
    if not failed:
        lines.append(f"✅ [{NAMESPACE}] All {len(ran)} tests ({actions} actions) successful, "
                     f"{skipped} tests skipped, 0 scenarios skipped.")
        return lines
    failed_actions = sum(len(r.failed) for r in failed)
    lines.append(f"❌ [{NAMESPACE}] {len(failed)}/{len(ran)} tests failed ({failed_actions}/{actions} actions), "
                 f"{skipped} tests skipped, 0 scenarios skipped:")
    for r in failed:
        lines.append(f"Test [{r.name}]:")
        lines += [f"  ❌ {a.name}: {a.text} ({a.detail})" for a in r.failed]
    return lines


def junit_xml(results: list[TestResult]) -> bytes:
    """One <testsuite> with a <testcase> per test: <skipped message=why>, or a <failure> listing actions."""
    ran = [r for r in results if not r.skipped]
    suite = ET.Element("testsuite", {
        "name": "connectivity test", "tests": str(len(results)),
        "failures": str(sum(1 for r in ran if r.failed)), "errors": "0",
        "skipped": str(len(results) - len(ran)), "time": f"{sum(r.seconds for r in results):.3f}",
    })
    for r in results:
        case = ET.SubElement(suite, "testcase", {"name": r.name, "classname": "connectivity test",
                                                 "time": f"{r.seconds:.3f}"})
        if r.skipped:
            ET.SubElement(case, "skipped", {"message": r.skipped})
        elif r.failed:
            fail = ET.SubElement(case, "failure", {"message": f"{len(r.failed)}/{len(r.actions)} actions failed",
                                                   "type": "failure"})
            fail.text = "\n".join(f"{a.name}: {a.text} ({a.detail})" for a in r.failed)
        if r.actions:
            ET.SubElement(case, "system-out").text = "\n".join(
                f"{'✅' if a.ok else '❌'} {a.name}: {a.text} (expected {'success' if a.expect_ok else 'drop'})"
                for a in r.actions)
    root = ET.Element("testsuites", {"name": "connectivity test", "tests": suite.get("tests", "0"),
                                     "failures": suite.get("failures", "0"), "errors": "0",
                                     "time": suite.get("time", "0")})
    root.append(suite)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
