"""Control-plane scale without a datapath: identities, ipcache and policy for a big cluster.

Runs the pure control-plane functions the agent runs, in a child process (so its peak RSS is its own):
identity labels for E endpoints (Deployments of ~30 pods spread over A apps in 50 namespaces), the
ipcache merge of E pod entries + N node entries, a policy repository with P CiliumNetworkPolicies
(each selecting one app and allowing another on 80/TCP) over the A identities, and the resolution of
every identity's policy through the repository's index (``PolicyRepository.resolve``, what the agent
calls per endpoint). Defaults: E=150 000, N=5 000, P=10 000, A=5 000 (the Cilium scale-report shape);
``MEMBRANE_BENCH_SCALE=0.1`` scales everything down for a quick run.

Baselines measured in the same run: for time, building a plain dict of the same E endpoint records
(the floor of holding the data at all); for policy loading, validating and translating the same
policies without a repository; for resolution, the scan of every rule (``resolve_endpoint`` over
``repo.rules()``, the path before the index) on a sample of identities, whose results must equal the
indexed ones; for memory, the RSS of the same child process before it builds anything. Cilium's
published anchor (+10.5 KiB of agent memory per pod) is in the notes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from bench.harness import Measurement

SCALE = float(os.environ.get("MEMBRANE_BENCH_SCALE", "1"))
ENDPOINTS = int(150_000 * SCALE)
NODES = int(5_000 * SCALE)
POLICIES = int(10_000 * SCALE)
APPS = int(5_000 * SCALE)
NAMESPACES = 50
SCAN_SAMPLE = 50  # identities resolved by scanning every rule (31 ms each at full size)
# One full-size run takes about 15 s on a 2-core machine (3.5 min before the policy index): repeat only if
# asked (`make bench` has a 20-minute budget).
MAX_RUNS = int(os.environ.get("MEMBRANE_BENCH_SCALE_RUNS", "3"))  # ~12 s a run since the index


def _rss_kib(field: str = "VmHWM") -> int:
    """This process's peak (VmHWM) or current (VmRSS) resident set, KiB. Not getrusage's ru_maxrss: Linux
    carries that over from the parent at fork, so a child of a large benchmark process would report the
    parent's size."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _child() -> dict[str, float]:
    """The measured work; prints its figures as JSON (runs in a fresh interpreter)."""
    from membrane.identity.labelfilter import LabelFilter
    from membrane.identity.labels import pod_identity_labels
    from membrane.ipcache.cache import IPCacheEntry, Source, merge, node_entries
    from membrane.policy.repository import PolicyRepository
    from membrane.policy.resolve import resolve_endpoint

    out: dict[str, float] = {"rss_start_kib": _rss_kib("VmRSS")}
    t = time.perf_counter()
    plain = {f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}": (i % APPS, f"ns{i % NAMESPACES}") for i in range(ENDPOINTS)}
    out["baseline_dict_s"] = time.perf_counter() - t

    t = time.perf_counter()
    label_filter = LabelFilter.default()
    by_labels: dict[object, int] = {}
    endpoint_identity: dict[str, int] = {}
    for ip, (app, ns) in plain.items():
        labels = pod_identity_labels({"app": f"app{app}", "tier": "web"}, ns, {"kubernetes.io/metadata.name": ns},
                                     label_filter=label_filter)
        endpoint_identity[ip] = by_labels.setdefault(labels, 256 + len(by_labels))
    out["identities_s"] = time.perf_counter() - t
    out["identities"] = len(by_labels)

    t = time.perf_counter()
    pods = [IPCacheEntry.of(f"{ip}/32", n, Source.KVSTORE, node=f"node{i % NODES}")
            for i, (ip, n) in enumerate(endpoint_identity.items())]
    nodes = [node_entries(f"node{i}", [f"172.16.{i >> 8 & 255}.{i & 255}"], own_node="node0") for i in range(NODES)]
    cache = merge([pods, *nodes])
    out["ipcache_s"] = time.perf_counter() - t
    out["ipcache_entries"] = len(cache)

    repo = PolicyRepository()
    t = time.perf_counter()
    for labels, n in by_labels.items():
        repo.upsert_identity(n, {f"{lb.source}:{lb.key}": lb.value for lb in labels})  # type: ignore[attr-defined]
    out["repo_identities_s"] = time.perf_counter() - t
    out.update(_load_policies(repo))
    out["policy_load_s"] = time.perf_counter() - t

    # what the agent runs for each endpoint: the repository's indexed resolution
    t = time.perf_counter()
    entries = 0
    for n in by_labels.values():
        entries += len(repo.resolve(n).entries)
    out["resolve_all_s"] = time.perf_counter() - t
    out["policy_entries"] = entries

    # baseline, on a sample: the scan of every rule (resolve_endpoint over repo.rules()), as before the index
    sample = list(by_labels.values())[::max(1, len(by_labels) // SCAN_SAMPLE)][:SCAN_SAMPLE]
    t = time.perf_counter()
    rules = repo.rules()
    scanned = {n: resolve_endpoint(n, rules, repo.cache) for n in sample}
    out["scan_one_ms"] = (time.perf_counter() - t) / len(sample) * 1e3
    t = time.perf_counter()
    indexed = {n: repo.resolve(n) for n in sample}
    out["indexed_one_ms"] = (time.perf_counter() - t) / len(sample) * 1e3
    if indexed != scanned:
        raise AssertionError("indexed resolution differs from the scan of every rule")
    out["rss_peak_kib"] = _rss_kib()
    return out


def _load_policies(repo: Any) -> dict[str, float]:
    """P policies into ``repo``; the seconds spent validating, translating and in the repository."""
    from membrane.model.validate import validate_object
    from membrane.policy.translate import origin_of, rules_from_object

    spent = {"validate_s": 0.0, "translate_s": 0.0, "repository_s": 0.0}
    for p in range(POLICIES):
        subject, peer = p % APPS, (p * 7 + 1) % APPS
        obj = {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
               "metadata": {"name": f"p{p}", "namespace": f"ns{subject % NAMESPACES}"},
               "spec": {"endpointSelector": {"matchLabels": {"app": f"app{subject}"}},
                        "ingress": [{"fromEndpoints": [{"matchLabels": {
                            "app": f"app{peer}", "k8s:io.kubernetes.pod.namespace": f"ns{peer % NAMESPACES}"}}],
                            "toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}]}]}]}}
        t0 = time.perf_counter()
        valid = validate_object(obj, f"policy {p}")
        t1 = time.perf_counter()
        origin, rules = origin_of(valid), rules_from_object(valid)
        t2 = time.perf_counter()
        repo.set_policy(origin, rules)
        spent["validate_s"] += t1 - t0
        spent["translate_s"] += t2 - t1
        spent["repository_s"] += time.perf_counter() - t2
    return spent


def run(runs: int) -> list[Measurement]:
    name = f"control plane at scale ({ENDPOINTS:,} endpoints, {NODES:,} nodes, {POLICIES:,} policies)"
    scan = f"scan of every rule ({SCAN_SAMPLE}-identity sample)"
    rows = {
        "identities_s": Measurement(name, "identity labels for every endpoint", "s", [],
                                    baseline_name="plain dict of the endpoints", higher_is_better=False),
        "ipcache_s": Measurement(name, "ipcache merge (pods + nodes)", "s", [],
                                 baseline_name="plain dict of the endpoints", higher_is_better=False),
        "policy_load_s": Measurement(name, "load identities and all policies (validate, translate, repository)",
                                     "s", [], baseline_name="validate + translate alone", higher_is_better=False),
        "resolve_one_ms": Measurement(name, "resolve one identity's policy (indexed)", "ms", [],
                                      baseline_name=scan, higher_is_better=False),
        "resolve_all_s": Measurement(name, "resolve every identity's policy (indexed)", "s", [],
                                     baseline_name=scan + " x identities", higher_is_better=False),
        "rss": Measurement(name, "peak memory", "MiB", [], baseline_name="interpreter before the work",
                           higher_is_better=False),
    }
    notes = ""
    for i in range(min(runs, MAX_RUNS)):
        proc = subprocess.run([sys.executable, "-m", "bench.scale", "--child"], capture_output=True, text=True,
                              timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"scale child failed: {proc.stderr[-2000:]}")
        out = json.loads(proc.stdout)
        for key in ("identities_s", "ipcache_s"):
            rows[key].subject.append(out[key])
            rows[key].baseline.append(out["baseline_dict_s"])
        rows["policy_load_s"].subject.append(out["policy_load_s"])
        rows["policy_load_s"].baseline.append(out["validate_s"] + out["translate_s"])
        rows["resolve_one_ms"].subject.append(out["resolve_all_s"] / out["identities"] * 1e3)
        rows["resolve_one_ms"].baseline.append(out["scan_one_ms"])
        rows["resolve_all_s"].subject.append(out["resolve_all_s"])
        rows["resolve_all_s"].baseline.append(out["scan_one_ms"] * out["identities"] / 1e3)
        rows["rss"].subject.append(out["rss_peak_kib"] / 1024)
        rows["rss"].baseline.append(out["rss_start_kib"] / 1024)
        per_pod = (out["rss_peak_kib"] - out["rss_start_kib"]) / ENDPOINTS
        notes = (f"{int(out['identities'])} identities, {int(out['ipcache_entries'])} ipcache entries, "
                 f"{int(out['policy_entries'])} resolved policy entries; policy load: identities "
                 f"{out['repo_identities_s']:.2f} s, validate {out['validate_s']:.2f} s, translate "
                 f"{out['translate_s']:.2f} s, repository {out['repository_s']:.2f} s; {per_pod:.2f} KiB per "
                 "endpoint (Cilium's 1000-node report: +10.5 KiB agent memory per pod)")
        print(f"  run {i + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in out.items() if k.endswith(("_s", "_ms"))),
              flush=True)
    for m in rows.values():
        m.notes = notes
    return list(rows.values())


if __name__ == "__main__" and sys.argv[1:] == ["--child"]:
    print(json.dumps(_child()))
