"""The x/y/z reachability matrix of the Kubernetes network-policy e2e tests, for a Membrane lab.

Namespaces x, y, z (label ``ns=<name>``) each hold pods a, b, c (label ``pod=<name>``) spread over the
lab's nodes; every pod answers its hostname over TCP and UDP on ports 80 and 81 (agnhost
serve-hostname, one container per port, named container ports ``serve-<port>-<tcp|udp>``).

A *model* says what should be reachable: ``model(src, dst, port, protocol) -> bool``. ``observe``
runs tests/lab/probe.py once per source pod (all sources at once) and ``check`` compares the two,
re-probing until they agree or the time is up, then fails with readable expected / observed grids.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tests.lab.harness import Lab

NAMESPACES = ("x", "y", "z")
POD_NAMES = ("a", "b", "c")
PORTS = (80, 81)
PROTOCOLS = ("TCP", "UDP")
NODES = ("k8s-ctr", "k8s-w1", "k8s-w2")
IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.52"
PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe.py")

Key = tuple[str, str, int, str]  # (source pod key, target pod key, port, protocol)
Model = Callable[["Pod", "Pod", int, str], bool]

# Each run gives every probe its own source port; runs step through 20000-59999 from a random start, so
# no 5-tuple repeats while a conntrack entry of an earlier (maybe then allowed) UDP flow could be alive,
# not even across test processes that share a lab.
_SPORT_FIRST, _SPORT_SPAN = 20000, 40000
_PROBES_PER_SOURCE = len(NAMESPACES) * len(POD_NAMES) * len(PORTS) * len(PROTOCOLS)
_runs = itertools.count(secrets.randbelow(_SPORT_SPAN // _PROBES_PER_SOURCE))


@dataclass
class Pod:
    namespace: str
    name: str
    node: str
    ip: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def node_of(namespace: str, name: str) -> str:
    """Latin-square placement: every namespace and every pod name is on all three nodes."""
    return NODES[(NAMESPACES.index(namespace) + POD_NAMES.index(name)) % len(NODES)]


def manifest() -> str:
    docs = []
    for ns in NAMESPACES:
        docs.append(json.dumps({"apiVersion": "v1", "kind": "Namespace",
                                "metadata": {"name": ns, "labels": {"ns": ns}}}))
        for name in POD_NAMES:
            containers = [{
                "name": f"cont-{port}", "image": IMAGE,
                "args": ["serve-hostname", "--tcp", "--udp", "--http=false", "--port", str(port)],
                "ports": [{"containerPort": port, "name": f"serve-{port}-{proto.lower()}", "protocol": proto}
                          for proto in PROTOCOLS],
            } for port in PORTS]
            docs.append(json.dumps({"apiVersion": "v1", "kind": "Pod",
                                    "metadata": {"name": name, "namespace": ns, "labels": {"pod": name}},
                                    "spec": {"nodeName": node_of(ns, name), "containers": containers}}))
    return "\n---\n".join(docs) + "\n"


def create_pods(lab: Lab, timeout: float = 60) -> dict[str, Pod]:
    """Apply the x/y/z namespaces and pods; wait until all are Ready; return them by key ("x/a")."""
    lab.apply(manifest())
    deadline = time.monotonic() + timeout
    while True:
        found = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p for p in lab.get_json("pods", "-A")}
        pods = {key: p for key, p in found.items() if key.split("/")[0] in NAMESPACES}
        if len(pods) == len(NAMESPACES) * len(POD_NAMES) and all(_ready(p) for p in pods.values()):
            break
        if time.monotonic() > deadline:
            raise AssertionError("x/y/z pods not Ready: " + json.dumps(
                {k: p.get("status", {}).get("phase") for k, p in pods.items()}))
        time.sleep(0.3)
    return {key: Pod(namespace=p["metadata"]["namespace"], name=p["metadata"]["name"],
                     node=p["spec"]["nodeName"], ip=p["status"]["podIP"],
                     labels=dict(p["metadata"].get("labels") or {}))
            for key, p in sorted(pods.items())}


def _ready(pod: dict[str, Any]) -> bool:
    return bool(pod.get("status", {}).get("podIP")) and any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions", []) or [])


# ---- expectation and observation ---------------------------------------------------------------------
def expected(pods: dict[str, Pod], model: Model) -> dict[Key, bool]:
    return {(s.key, d.key, port, proto): bool(model(s, d, port, proto))
            for s in pods.values() for d in pods.values() for port in PORTS for proto in PROTOCOLS}


def probe_from(lab: Lab, src: Pod, targets: Iterable[Pod], base: int, timeout: float = 1.0) -> dict[Key, bool]:
    """One probe.py run in ``src`` (source ports from ``base`` on): True where the target answered with
    its own hostname."""
    targets = list(targets)
    spec = {"targets": [{"key": t.key, "ip": t.ip} for t in targets], "ports": list(PORTS),
            "protocols": list(PROTOCOLS), "timeout": timeout, "tries": 2, "sport_base": base}
    proc = lab.run("exec", "-n", src.namespace, src.name, "--", sys.executable, PROBE, json.dumps(spec),
                   check=False, timeout=30)
    try:
        results = json.loads(proc.stdout)["results"]
    except (ValueError, KeyError) as exc:
        raise AssertionError(f"probe in {src.key} failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}") from exc
    names = {t.key: t.name for t in targets}
    return {(src.key, r["key"], r["port"], r["protocol"]): r["answer"] == names[r["key"]] for r in results}


def observe(lab: Lab, pods: dict[str, Pod]) -> dict[Key, bool]:
    """The whole matrix: every source pod probes every pod, all sources in parallel."""
    sources = list(pods.values())
    # Source ports are per source pod, so all sources of one run share a block.
    base = _SPORT_FIRST + (next(_runs) * _PROBES_PER_SOURCE) % (_SPORT_SPAN - _PROBES_PER_SOURCE)
    with ThreadPoolExecutor(max_workers=len(sources)) as pool:
        parts = list(pool.map(lambda s: probe_from(lab, s, sources, base), sources))
    out: dict[Key, bool] = {}
    for part in parts:
        out.update(part)
    return out


def check(lab: Lab, pods: dict[str, Pod], model: Model, timeout: float = 5.0, what: str = "") -> None:
    """Re-probe until the lab matches the model (at least once, at most ~``timeout`` s), else fail."""
    want = expected(pods, model)
    deadline = time.monotonic() + timeout
    while True:
        got = observe(lab, pods)
        if got == want:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"reachability {what or 'matrix'} differs from the model:\n"
                                 + render_diff(pods, want, got))
        time.sleep(0.2)


# ---- rendering ---------------------------------------------------------------------------------------
def render_grid(pods: dict[str, Pod], cell: Callable[[str, str], str], title: str) -> list[str]:
    keys = list(pods)
    width = max(len(title), *(len(k) for k in keys)) + 1
    lines = [title.ljust(width) + " ".join(k.rjust(3) for k in keys)]
    for src in keys:
        lines.append(src.ljust(width) + " ".join(cell(src, dst).rjust(3) for dst in keys))
    return lines


def _side_by_side(*grids: list[str]) -> str:
    widths = [max(len(line) for line in grid) for grid in grids]
    return "\n".join("   ".join(line.ljust(w) for line, w in zip(row, widths, strict=True)).rstrip()
                     for row in zip(*grids, strict=True))


def render_diff(pods: dict[str, Pod], want: dict[Key, bool], got: dict[Key, bool]) -> str:
    """Per port/protocol with a mismatch: expected, observed and comparison grids (rows = sources).

    ``.`` allowed, ``X`` denied; in the comparison ``.`` agrees and ``!`` differs.
    """
    blocks = []
    for port, proto in itertools.product(PORTS, PROTOCOLS):
        wrong = [(k[0], k[1]) for k in want if k[2:] == (port, proto) and want[k] != got.get(k)]
        if not wrong:
            continue
        listed = ", ".join(f"{s}->{d}" for s, d in wrong[:6]) + (" ..." if len(wrong) > 6 else "")
        blocks.append(f"== {port}/{proto}: {len(wrong)} wrong ({listed})\n" + _side_by_side(
            render_grid(pods, _cells(want, port, proto), "expected"),
            render_grid(pods, _cells(got, port, proto), "observed"),
            render_grid(pods, _compare(want, got, port, proto), "compare")))
    return "\n".join(blocks) or "(no difference)"


def _cells(table: dict[Key, bool], port: int, proto: str) -> Callable[[str, str], str]:
    return lambda s, d: {True: ".", False: "X"}.get(table.get((s, d, port, proto)), "?")


def _compare(want: dict[Key, bool], got: dict[Key, bool], port: int, proto: str) -> Callable[[str, str], str]:
    return lambda s, d: "." if want[s, d, port, proto] == got.get((s, d, port, proto)) else "!"


# ---- model building blocks ---------------------------------------------------------------------------
def allow_all(src: Pod, dst: Pod, port: int, proto: str) -> bool:
    return True


def datapath_drops(lab: Lab, node: str) -> dict[str, int]:
    """``"<reason>/<direction>"`` -> packets from the node agent's datapath metrics."""
    metrics = lab.agent_status(node).get("datapath-metrics") or {}
    return {key: int(value.get("packets", 0)) for key, value in metrics.items()}
