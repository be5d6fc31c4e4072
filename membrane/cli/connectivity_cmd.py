"""``membrane connectivity test``: cilium-cli's connectivity test against a lab.

Deploys :mod:`connectivity_deploy` in ``cilium-test-1`` (kept between runs, as cilium-cli does), then
for each test of :mod:`connectivity_suite`: applies its CiliumNetworkPolicy / NetworkPolicy YAML through
the store, runs its actions (curl, ping, nslookup in the client pods, the nodes' namespaces or the
outside world) and deletes the policies again. An action that does not yet see what it must is retried
for up to 10 s (policy takes effect asynchronously on every node). Exit 1 when a test fails.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import yaml

from membrane.cli.arguments import CLIError
from membrane.cli.connectivity_deploy import deploy_test_pods, pause_pids
from membrane.cli.connectivity_flows import MODES
from membrane.cli.connectivity_policies import NAMESPACE
from membrane.cli.connectivity_report import ActionResult, TestResult, junit_xml, summary
from membrane.cli.connectivity_suite import (
    TESTS,
    ActionSpec,
    ConnTest,
    Topology,
    compile_filters,
    selected,
)

SETTLE_SECONDS = 10.0  # how long an action may take to see what its test's policy must give
WORKERS = 4


def add_parser(sub: Any, lab_arg: Any) -> None:
    p = sub.add_parser("connectivity", help="cilium-cli's connectivity test against the lab")
    p.set_defaults(handler=run)  # main dispatches to the handler its sub-parser set
    lab_arg(p)
    csub = p.add_subparsers(dest="connectivity_cmd", required=True)
    q = csub.add_parser("test", help="deploy cilium-test-1 and run the connectivity tests")
    lab_arg(q)
    q.add_argument("--test", action="append", default=[], metavar="REGEX",
                   help="run only tests matching REGEX; '!REGEX' leaves matching tests out (repeatable)")
    q.add_argument("--junit-file", default=None, help="write a JUnit XML report to this file")
    q.add_argument("--timeout", type=float, default=120, help="seconds to wait for the test pods (default 120)")
    q.add_argument("--flow-validation", choices=MODES, default="warning",
                   help="check Hubble's flows of pod-to-pod actions: warning (default), strict (fail), disabled")
    from membrane.cli import connectivity_perf

    connectivity_perf.add_parser(csub, lab_arg)


def run(args: argparse.Namespace) -> int:
    from membrane.cli.target import cluster_store

    if args.connectivity_cmd == "perf":
        from membrane.cli import connectivity_perf

        return connectivity_perf.run(args)

    try:
        run_filters, leave_filters = compile_filters(args.test)
    except re.error as exc:
        raise CLIError(f"--test: invalid regular expression: {exc}") from None
    if args.junit_file and not os.path.isdir(os.path.dirname(os.path.abspath(args.junit_file))):
        raise CLIError(f"--junit-file {args.junit_file}: directory does not exist")
    store = cluster_store(args.lab)
    topo = deploy_test_pods(store, args.lab, args.timeout)
    print(f"ℹ️  [{NAMESPACE}] client on {topo.pods['client'].node}, echo-other-node on "
          f"{topo.pods['echo-other-node'].node}, {len(topo.nodes)} nodes", flush=True)
    results: list[TestResult] = []
    for i, test in enumerate(TESTS, 1):
        head = f"[{NAMESPACE}] {{}} [{test.name}] [{i}/{len(TESTS)}]"
        if test.missing:
            results.append(TestResult(test.name, skipped=f"needs {test.missing}"))
            print(f"[=] {head.format('Skipping test')} (needs {test.missing})", flush=True)
        elif not selected(test.name, run_filters, leave_filters):
            results.append(TestResult(test.name, skipped="skipped by user (--test)"))
            print(f"[=] {head.format('Skipping test')} (skipped by user)", flush=True)
        else:
            print(f"[=] {head.format('Test')}", flush=True)
            results.append(_run_test(store, args.lab, test, topo, args.flow_validation))
    print()
    for line in summary(results):
        print(line)
    if args.junit_file:
        with open(args.junit_file, "wb") as fh:
            fh.write(junit_xml(results))
    return 1 if any(r.failed for r in results) else 0


# ---- running a test ------------------------------------------------------------------------------------
def _policy_objects(test: ConnTest) -> list[dict[str, Any]]:
    from membrane.model.validate import validate_object

    return [validate_object(doc, f"policy of {test.name}") for text in test.policies for doc in yaml.safe_load_all(text)]


def _run_test(store: Any, lab: str, test: ConnTest, topo: Topology, flows: str) -> TestResult:
    from membrane.model.kinds import lookup_kind

    started = time.monotonic()
    policies = _policy_objects(test)
    if policies:
        for obj in policies:
            print(f"  ℹ️  📜 Applying {obj['kind']} '{obj['metadata']['name']}' to namespace '{NAMESPACE}'", flush=True)
        store.apply_many(policies)
        time.sleep(1.0)
    sandboxes = pause_pids(lab)
    specs = test.actions(topo)
    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            results = list(pool.map(lambda s: _run_action(lab, sandboxes, s, flows), specs))
    finally:
        if policies:
            keys = [(lookup_kind(o["kind"]).group, o["kind"], NAMESPACE, o["metadata"]["name"]) for o in policies]
            store.delete_many(keys)
            for obj in policies:
                print(f"  ℹ️  📜 Deleting {obj['kind']} '{obj['metadata']['name']}' from namespace '{NAMESPACE}'",
                      flush=True)
    counters: dict[str, int] = {}
    out = TestResult(test.name, seconds=time.monotonic() - started)
    for spec, (ok, detail, secs, flow_problem) in zip(specs, results, strict=True):
        n = counters[spec.scenario] = counters.get(spec.scenario, -1) + 1
        name = f"{test.name}/{spec.scenario}/{spec.argv[0]}-{n}"
        text = f"{spec.src_text} -> {spec.dst_text}"
        out.actions.append(ActionResult(name, text, spec.expect_ok, ok, detail, secs))
        mark = "✅" if ok else "❌"
        wanted = "success" if spec.expect_ok else f"exit code {spec.fail_code}" if spec.fail_code else "drop"
        print(f"  [.] Action [{name}: {text}] {mark} expected {wanted}"
              + ("" if ok else f", {detail}"), flush=True)
        if flow_problem:
            print(f"  {'❌' if flows == 'strict' else '⚠️ '} Flow validation [{name}]: {flow_problem}", flush=True)
            if flows == "strict" and ok:
                out.actions[-1].ok = False
                out.actions[-1].detail = f"flow validation: {flow_problem}"
    return out


def _argv(lab: str, sandboxes: dict[str, int], spec: ActionSpec) -> list[str]:
    where, name = spec.place
    if where == "pod":
        return ["nsenter", "-t", str(sandboxes[name]), "--net", "--uts", "--mount", "--", *spec.argv]
    from membrane.cli.lab_cmds import place_netns

    netns = place_netns(lab, where, name)
    return ["ip", "netns", "exec", netns, *spec.argv]


def _run_action(lab: str, sandboxes: dict[str, int], spec: ActionSpec,
                flows: str) -> tuple[bool, str, float, str | None]:
    """(saw what it must, what it saw, seconds, flow problem); retried while the policy may still be
    converging. The flows are checked for the final attempt only."""
    from membrane.cli import connectivity_flows

    started = time.monotonic()
    detail = ""
    attempt_at = time.time()
    while not detail or time.monotonic() - started < SETTLE_SECONDS:
        if detail:
            time.sleep(0.5)
        if spec.place[0] == "pod" and spec.place[1] not in sandboxes:
            return False, f"no sandbox for pod {spec.place[1]}", 0.0, None
        attempt_at = time.time()
        proc = subprocess.run(_argv(lab, sandboxes, spec), capture_output=True, text=True, timeout=30)
        succeeded = proc.returncode == 0
        detail = "success" if succeeded else f"{spec.argv[0]} exit code {proc.returncode}"
        if succeeded == spec.expect_ok and (succeeded or spec.fail_code in (0, proc.returncode)):
            break
    else:
        return False, f"got {detail}", time.monotonic() - started, None
    problem = None
    if flows != "disabled" and connectivity_flows.validated(spec):
        problem = connectivity_flows.validate(lab, spec, spec.expect_ok, attempt_at - 0.05)
    return True, detail, time.monotonic() - started, problem
