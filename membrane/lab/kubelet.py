"""The lab kubelet: one process that plays kubelet for every lab node (plus the scheduler).

Loop: bind unscheduled pods to nodes → start sandboxes (netns, pause, CNI ADD) and containers for
pods bound here → watch containers (restart with backoff, readiness from listening ports) → write pod
status (Pending/ContainerCreating with the CNI error → Running) → tear down pods that were deleted.
Pod starts run on a small thread pool so hundreds of pods come up in parallel.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from membrane.lab.deployments import DeploymentController
from membrane.lab.exit_watch import ExitWatch
from membrane.lab.paths import LabPaths
from membrane.lab.pod_status import container_statuses, needs_listening_ports, pod_status
from membrane.lab.port_probe import ListeningPorts
from membrane.lab.processes import is_alive
from membrane.lab.record import load_record
from membrane.lab.router import RouterRoutes
from membrane.lab.runtime import CNIError, Runtime, Sandbox
from membrane.lab.scheduler import schedule
from membrane.lab.services import ServiceController
from membrane.lab.workloads.images import ImageError, resolve
from membrane.model.config import ClusterConfig
from membrane.model.event import NORMAL, WARNING
from membrane.model.pod import pod_is_terminating
from membrane.store.etcd import EtcdClient
from membrane.store.events import EventRecorder
from membrane.store.mirror import Mirror
from membrane.store.resources import ResourceStore

log = logging.getLogger("membrane.lab.kubelet")

RESOLV_CONF = "nameserver 10.96.0.10\nsearch {ns}.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
RETRY_BACKOFF = (1, 2, 4, 8, 15, 30)
START_WORKERS = 16  # pods started in parallel (each mostly waits: on processes, the CNI plugin, the agent)
STOP_WORKERS = 8  # pods stopped in parallel, on their own pool: a grace period never delays a start
# A settled pod (nothing about it changed, ready or not waiting on ports) has its containers checked at
# most this often, as kubelet's PLEG relists every second; a pass runs after every burst of watch events,
# and checking every container and re-fingerprinting every status on each one was O(n) per pass.
RELIST_PERIOD = 1.0
# A settled pod whose every container process is watched for its exit (membrane.lab.exit_watch) is
# re-checked when one exits, and otherwise only this often: a relist of every pod each second made each
# pod's share of the kubelet's CPU grow with the pod count (1 000 reads of /proc a second in a burst).
WATCHED_RELIST_PERIOD = 10.0


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kubelet:
    def __init__(self, lab: str, cluster: str = "default", workers: int = START_WORKERS) -> None:
        self.lab = lab
        self.paths = LabPaths(lab)
        self.client = EtcdClient(self.paths.etcd_endpoint)
        self.store = ResourceStore(self.client, cluster)
        self.prefix = f"/membrane/{cluster}"
        self.pods = Mirror(self.client, f"{self.prefix}/resources/core/Pod/")
        self.nodes = Mirror(self.client, f"{self.prefix}/resources/core/Node/")
        self.deployments = Mirror(self.client, f"{self.prefix}/resources/apps/Deployment/")
        self.services = Mirror(self.client, f"{self.prefix}/resources/core/Service/")
        self.svc_ctrl = ServiceController(self.store)
        self.runtime = Runtime(lab)
        self.deploy_ctrl = DeploymentController(self.store)
        self.events = EventRecorder(self.store, "kubelet")
        self.terminating: set[str] = set()  # uids of pods being stopped after a graceful delete
        self._unschedulable: dict[str, str] = {}  # pod uid -> the FailedScheduling message last recorded
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="podstart")
        self.stop_pool = ThreadPoolExecutor(max_workers=STOP_WORKERS, thread_name_prefix="podstop")
        self.lock = threading.Lock()
        self.sandboxes: dict[str, Sandbox] = {}  # by pod uid
        self.inflight: set[str] = set()
        self.failures: dict[str, tuple[int, float, str, str]] = {}  # uid -> (attempts, next_try, reason, msg)
        self.last_status: dict[str, str] = {}
        # uid -> (what its status depends on, when checked, every container process watched for its exit)
        self._settled: dict[str, tuple[tuple[Any, ...], float, bool]] = {}
        self.exits = ExitWatch()
        self.stop_event = threading.Event()
        self.wake = threading.Event()
        self.max_pods = 110
        self.router: RouterRoutes | None = None
        self._image_errors: dict[tuple[str, str], tuple[str, str]] = {}
        self._queued: list[tuple[dict[str, Any], dict[str, Any], str]] | None = None  # statuses of this pass
        self._bound: set[str] = set()  # pods bound to a node in this pass
        self._decoded_pods: dict[str, tuple[int, dict[str, Any]]] = {}  # etcd key -> (mod revision, pod)
        self.ports = ListeningPorts(self.runtime.listening_tcp_ports)  # readiness of declared containerPorts

    # ---- main loop ---------------------------------------------------------------------------------
    def run(self) -> None:
        kv = self.client.get(f"{self.prefix}/config")
        config = ClusterConfig.from_dict(json.loads(kv.value)) if kv is not None else ClusterConfig()
        self.max_pods = config.max_pods_per_node
        record = load_record(self.lab)
        # Tunnel mode / encapsulation: the underlay router learns no pod routes; pod traffic crosses
        # it encapsulated (CrossSubnet: only between subnets, which is all the router sees).
        # BGP on: the router learns them from the nodes' speakers (membrane.lab.frr), never from here.
        if (record is not None and config.routing_mode != "tunnel" and config.encapsulation_mode == "Never"
                and not config.bgp_control_plane_enabled):
            self.router = RouterRoutes(self.lab, record.topology)
        for sb in self.runtime.load_all():
            self.sandboxes[sb.uid] = sb
        for m in (self.pods, self.nodes, self.deployments, self.services):
            m.subscribe(lambda *_: self.wake.set())
            m.start()
            m.wait_synced(30)
        passes, pass_cpu, pass_wall, reported = 0, 0.0, 0.0, time.monotonic()
        while not self.stop_event.is_set():
            self.wake.clear()
            c0, w0 = time.thread_time(), time.monotonic()
            try:
                self.sync()
            except Exception:
                log.exception("sync failed")
            passes, pass_cpu, pass_wall = passes + 1, pass_cpu + time.thread_time() - c0, pass_wall + time.monotonic() - w0
            if w0 - reported >= 10 and pass_cpu >= 0.05:  # what the passes cost (bench/README, lab1k)
                log.info("sync passes: %d in %.0f s, %.2f s CPU, %.2f s wall, %d pods", passes, w0 - reported,
                         pass_cpu, pass_wall, len(self._decoded_pods))
                passes, pass_cpu, pass_wall, reported = 0, 0.0, 0.0, w0
            self.wake.wait(1.0)
            # Changes come in bursts (every status write echoes back through the watch): gather them
            # for a moment so one sync handles many, instead of one full pass per event.
            self.stop_event.wait(0.1)
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.stop_pool.shutdown(wait=True, cancel_futures=True)

    def _objects(self, mirror: Mirror) -> list[dict[str, Any]]:
        return [self.store.decode(kv) for kv in mirror.items()]

    def _pod_objects(self) -> list[dict[str, Any]]:
        """Every pod, each decoded once per revision: a pass runs after every burst of watch events and
        decoding all pods each time was O(n) per pass. The objects are shared between passes, so this
        loop never edits one in place (binding and status writes work on copies)."""
        decoded: dict[str, tuple[int, dict[str, Any]]] = {}
        for kv in self.pods.items():
            hit = self._decoded_pods.get(kv.key)
            decoded[kv.key] = hit if hit is not None and hit[0] == kv.mod_revision else \
                (kv.mod_revision, self.store.decode(kv))
        self._decoded_pods = decoded
        return [obj for _rev, obj in decoded.values()]

    def sync(self) -> None:
        self._queued = []
        self._bound = set()
        try:
            self._sync()
        finally:
            self._flush_statuses()

    def _sync(self) -> None:
        pods = self._pod_objects()
        nodes = self._objects(self.nodes)
        if self.router is not None:
            try:
                self.router.sync(nodes)
            except Exception as exc:
                log.warning("router routes: %s", exc)
        counts = _pods_per_node(pods)
        self.deploy_ctrl.sync(self._objects(self.deployments), pods,
                              place=lambda pod: self._place_new(pod, nodes, counts), created=self._created)
        try:
            self.svc_ctrl.sync(self._objects(self.services), pods)
        except Exception as exc:
            log.warning("services: %s", exc)
        by_uid = {p["metadata"]["uid"]: p for p in pods}
        self._schedule(pods, nodes, counts)
        for pod in pods:
            node = pod.get("spec", {}).get("nodeName")
            uid = pod["metadata"]["uid"]
            if pod_is_terminating(pod):  # deleted with a grace period: stop it, then remove the object
                if uid not in self.inflight and uid not in self.terminating:
                    self.terminating.add(uid)
                    self.stop_pool.submit(self._terminate, pod, self.sandboxes.get(uid))
                continue
            if node and uid not in self.sandboxes and uid not in self.inflight:
                attempts, next_try, _r, _m = self.failures.get(uid, (0, 0.0, "", ""))
                if time.monotonic() >= next_try:
                    with self.lock:
                        self.inflight.add(uid)
                    self.pool.submit(self._start_pod, pod, node, time.monotonic())
        for uid, sb in list(self.sandboxes.items()):
            if uid not in by_uid and uid not in self.inflight:
                # On the stop pool: one pod's teardown (grace periods, CNI DEL) must not hold
                # up this loop, which writes every other pod's status.
                with self.lock:
                    self.inflight.add(uid)
                self.stop_pool.submit(self._teardown_in_pool, sb)
        node_ips = {n["metadata"]["name"]: next((a["address"] for a in n.get("status", {}).get("addresses", [])
                                                  if a.get("type") == "InternalIP"), "") for n in nodes}
        now = time.monotonic()
        for uid in self.exits.exited():  # a container exited: check its pod in this pass
            self._settled.pop(uid, None)
        for pod in pods:
            if not pod_is_terminating(pod):  # a terminating pod's containers are not restarted
                self._supervise_and_report(pod, node_ips.get(pod.get("spec", {}).get("nodeName", ""), ""), now)

    def _bound_copy(self, pod: dict[str, Any], node: str) -> dict[str, Any]:
        """A copy of ``pod`` on ``node`` with the status this kubelet writes next for a scheduled pod that
        has no sandbox yet (Pending, ContainerCreating): the binding and that status are one write."""
        bound = {**pod, "metadata": dict(pod["metadata"]), "spec": {**pod["spec"], "nodeName": node}}
        bound["status"] = pod_status(bound, None, {}, "ContainerCreating", "")
        bound["status"]["startTime"] = (pod.get("status") or {}).get("startTime") or now_iso()
        return bound

    def _remember_written(self, pod: dict[str, Any]) -> None:
        """``pod`` was stored with the first status: the next pass need not write the same one again."""
        status = {k: v for k, v in pod.get("status", {}).items() if k != "startTime"}
        self.last_status[pod["metadata"].get("uid", "")] = json.dumps(status, sort_keys=True)

    def _place_new(self, pod: dict[str, Any], nodes: list[dict[str, Any]], counts: dict[str, int]) -> dict[str, Any]:
        """A Deployment's new pod, scheduled before it is created (the binding in the same write); a pod
        no node takes is created unscheduled, and the next pass's ``_schedule`` says why."""
        placement = schedule(pod, nodes, counts, self.max_pods)
        if placement.node is None:
            return pod
        counts[placement.node] = counts.get(placement.node, 0) + 1
        return self._bound_copy(pod, placement.node)

    def _created(self, stored: list[dict[str, Any]]) -> None:
        for pod in stored:
            node = pod.get("spec", {}).get("nodeName")
            if node:
                self._remember_written(pod)
                self._scheduled_event(pod)

    def _scheduled_event(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        self.events.record(pod, NORMAL, "Scheduled", f"Successfully assigned {meta.get('namespace')}/"
                           f"{meta['name']} to {pod['spec']['nodeName']}", "default-scheduler")

    def _schedule(self, pods: list[dict[str, Any]], nodes: list[dict[str, Any]], counts: dict[str, int]) -> None:
        binds: list[tuple[int, dict[str, Any]]] = []  # (index in pods, the pod with its node)
        for i, pod in enumerate(pods):
            if pod.get("spec", {}).get("nodeName"):
                continue
            placement = schedule(pod, nodes, counts, self.max_pods)
            uid = pod["metadata"].get("uid", "")
            if placement.node is None:
                self._write_status(pod, pod_status(pod, None, {}, "Unschedulable", placement.message, scheduled=False))
                if self._unschedulable.get(uid) != placement.message:  # once per distinct reason
                    self._unschedulable[uid] = placement.message
                    self.events.record(pod, WARNING, "FailedScheduling", placement.message, "default-scheduler")
                continue
            counts[placement.node] = counts.get(placement.node, 0) + 1
            binds.append((i, self._bound_copy(pod, placement.node)))  # a copy: the decoded pod is shared
        if not binds:
            return
        # The bindings in a few compare-and-swap transactions: one GET and one TXN per pod, one pod after
        # the other, held every start of a burst back (300 pods: ~600 round trips before the first start).
        try:
            done = self.store.replace_many([(pods[i], bound) for i, bound in binds])
        except Exception as exc:  # the next round tries again
            log.debug("binding %d pods failed: %s", len(binds), exc)
            return
        for (i, bound), ok in zip(binds, done, strict=True):
            if not ok:  # a conflict: the next round sees the new version
                log.debug("binding %s failed: changed meanwhile", bound["metadata"]["name"])
                continue
            pods[i] = bound
            uid = bound["metadata"].get("uid", "")
            self._unschedulable.pop(uid, None)
            self._bound.add(uid)
            self._remember_written(bound)
            self._scheduled_event(bound)

    # ---- pod start / stop ----------------------------------------------------------------------------
    def _start_pod(self, pod: dict[str, Any], node: str, queued: float | None = None) -> None:
        uid = pod["metadata"]["uid"]
        sb = self.runtime.new_sandbox(pod, node)
        stages: dict[str, float] = {}  # seconds per stage of this start, for bench/ (cni-timings.jsonl)
        t_start = time.monotonic()
        if queued is not None:
            stages["queue"] = t_start - queued
        try:
            self.runtime.create_sandbox(sb, RESOLV_CONF.format(ns=sb.namespace))
            deadline = time.monotonic() + 10
            while not self.runtime.pause_ready(sb):
                if time.monotonic() > deadline:
                    raise RuntimeError("pod sandbox did not start")
                time.sleep(0.01)
            t0 = time.monotonic()
            stages["sandbox"] = t0 - t_start
            result = self.runtime.cni("ADD", sb, self.paths.agent_socket(node))
            t1 = time.monotonic()
            ips = result.get("ips") or []
            sb.ip = ips[0]["address"].split("/")[0] if ips else ""
            self.runtime.save(sb)
            for c in pod["spec"]["containers"]:
                self._start_container(sb, c)
            stages["containers"] = time.monotonic() - t1
            self._record_timing("ADD", sb, t1 - t0, stages)
            with self.lock:
                self.sandboxes[uid] = sb
                self.failures.pop(uid, None)
            log.info("pod %s/%s running on %s with IP %s", sb.namespace, sb.name, node, sb.ip)
        except CNIError as exc:
            message = f"Failed to create pod sandbox: plugin type=\"membrane-cni\" failed (add): {exc}"
            self.events.record({"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": sb.name, "namespace": sb.namespace, "uid": sb.uid}}, WARNING, "FailedCreatePodSandBox",
                message, "kubelet", node)
            self._fail_start(sb, "ContainerCreating", message)
        except Exception as exc:
            log.exception("starting pod %s failed", sb.key)
            self._fail_start(sb, "ContainerCreating", f"Failed to create pod sandbox: {exc}")
        finally:
            with self.lock:
                self.inflight.discard(uid)
            self.wake.set()

    def _record_timing(self, command: str, sb: Sandbox, seconds: float, stages: dict[str, float] | None = None) -> None:
        """CNI timings as the runtime sees them (exec of the plugin included), for bench/; ``stages``:
        the other steps of the pod's start (queue wait for a worker, sandbox, container start)."""
        line = json.dumps({"command": command, "pod": sb.key, "node": sb.node, "seconds": round(seconds, 6),
                           "time": time.time(), **{k: round(v, 6) for k, v in (stages or {}).items()}})
        with self.lock, open(f"{self.paths.run_dir}/cni-timings.jsonl", "a") as fh:
            fh.write(line + "\n")

    def _fail_start(self, sb: Sandbox, reason: str, message: str) -> None:
        """Undo the sandbox (nothing leaks) and retry later with backoff, like kubelet."""
        self.runtime.destroy(sb, self.paths.agent_socket(sb.node))
        attempts = self.failures.get(sb.uid, (0, 0.0, "", ""))[0] + 1
        delay = RETRY_BACKOFF[min(attempts - 1, len(RETRY_BACKOFF) - 1)]
        with self.lock:
            self.failures[sb.uid] = (attempts, time.monotonic() + delay, reason, message)
        log.warning("pod %s: %s (retry in %ss)", sb.key, message, delay)

    def _start_container(self, sb: Sandbox, c: dict[str, Any]) -> None:
        env = {e["name"]: str(e.get("value", "")) for e in c.get("env", []) or [] if "name" in e}
        try:
            argv = resolve(c["image"], c.get("command"), c.get("args"), env)
        except ImageError as exc:
            sb.restarts.setdefault(c["name"], 0)
            self._image_errors[(sb.uid, c["name"])] = (exc.reason, str(exc))
            return
        self.runtime.start_container(sb, c["name"], argv, env)

    def _teardown_in_pool(self, sb: Sandbox) -> None:
        try:
            self._teardown(sb)
        except Exception:
            log.exception("tearing down pod %s failed (will retry)", sb.key)
        finally:
            with self.lock:
                self.inflight.discard(sb.uid)
            self.wake.set()

    def _teardown(self, sb: Sandbox) -> None:
        error = self.runtime.destroy(sb, self.paths.agent_socket(sb.node))
        if error:
            log.warning("pod %s: CNI DEL failed (will retry): %s", sb.key, error)
            return
        with self.lock:
            self.sandboxes.pop(sb.uid, None)
        self.last_status.pop(sb.uid, None)
        self._settled.pop(sb.uid, None)
        self.exits.forget(sb.uid)
        self.ports.forget(sb.uid)
        for key in [k for k in list(self._image_errors) if k[0] == sb.uid]:
            self._image_errors.pop(key, None)
        log.info("pod %s removed", sb.key)

    def _terminate(self, pod: dict[str, Any], sb: Sandbox | None) -> None:
        """Graceful deletion: SIGTERM every container, SIGKILL what is left after the grace period,
        then delete the Pod object; the sandbox (network, CNI DEL) goes as for any vanished pod."""
        meta = pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = pod.get("spec", {}).get("terminationGracePeriodSeconds", 30)
        try:
            if sb is not None:
                names = list(sb.containers)
                threads = [threading.Thread(target=self.runtime.stop_container, args=(sb, n, float(grace)))
                           for n in names]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                self.runtime.save(sb)
                self.events.record(pod, NORMAL, "Killing", f"Stopping container{'s' if len(names) > 1 else ''} "
                                   f"{', '.join(names)}", "kubelet", sb.node)
            current = self.store.get("core", "Pod", meta.get("namespace", "default"), meta["name"])
            if current is not None and current["metadata"].get("uid") == meta.get("uid"):
                self.store.delete_many([("core", "Pod", meta.get("namespace", "default"), meta["name"])])
        except Exception as exc:
            log.warning("terminating pod %s/%s: %s", meta.get("namespace"), meta["name"], exc)
        finally:
            with self.lock:
                self.terminating.discard(meta.get("uid", ""))
            self.wake.set()

    # ---- supervision and status ----------------------------------------------------------------------
    def _supervise_and_report(self, pod: dict[str, Any], host_ip: str, now: float | None = None) -> None:
        uid = pod["metadata"]["uid"]
        sb = self.sandboxes.get(uid)
        # What this pod's status depends on besides its containers' processes: if none of it changed since
        # the last check, less than RELIST_PERIOD ago, there is nothing to restart and nothing to write.
        key = (pod["metadata"].get("resourceVersion"), id(sb) if sb is not None else None, self.failures.get(uid),
               host_ip)
        settled = self._settled.get(uid)
        if now is not None and settled is not None and settled[0] == key and \
                now - settled[1] < (WATCHED_RELIST_PERIOD if settled[2] else RELIST_PERIOD):
            return
        if sb is None:
            fail = self.failures.get(uid)
            if fail and pod.get("spec", {}).get("nodeName"):
                self._write_status(pod, pod_status(pod, None, {}, fail[2], fail[3]))
            elif pod.get("spec", {}).get("nodeName"):
                self._write_status(pod, pod_status(pod, None, {}, "ContainerCreating", ""))
            if now is not None:
                self._settled[uid] = (key, now, False)
            return
        for c in pod["spec"]["containers"]:
            rec = sb.containers.get(c["name"])
            if rec is None or not is_alive(rec):
                if (sb.uid, c["name"]) in self._image_errors:
                    continue
                if rec is not None:
                    sb.restarts[c["name"]] = sb.restarts.get(c["name"], 0) + 1
                    self.runtime.stop_container(sb, c["name"])  # reaps the exited process
                    if pod.get("spec", {}).get("restartPolicy", "Always") == "Never":
                        continue
                self._start_container(sb, c)
        ports = needs_listening_ports(pod)
        listening = self.ports.get(pod, sb) if ports else set()
        statuses = container_statuses(pod, sb, listening, self._image_errors)
        self._write_status(pod, pod_status(pod, sb, statuses, "", "", host_ip=host_ip))
        if now is not None and (not ports or all(st["ready"] for st in statuses)):  # else: probe next pass
            watched = all([self.exits.watch(uid, rec) for rec in list(sb.containers.values())])
            self._settled[uid] = (key, now, watched)

    def _write_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        """Write a changed status; during a sync pass, queued and written by ``_flush_statuses``."""
        uid = pod["metadata"]["uid"]
        if uid in self._bound:  # bound in this pass: its resourceVersion is stale, the next pass writes it
            return
        fingerprint = json.dumps(status, sort_keys=True)
        if self.last_status.get(uid) == fingerprint and pod.get("status"):
            return
        old = pod.get("status", {})
        status.setdefault("startTime", old.get("startTime") or now_iso())
        pod = {**pod, "metadata": dict(pod["metadata"]), "status": status}  # the decoded one is shared (_pod_objects)
        if self._queued is not None:
            self._queued.append((pod, status, fingerprint))
            return
        try:
            self.store.put_object(pod, expected_revision=int(pod["metadata"]["resourceVersion"]))
            self.last_status[uid] = fingerprint
        except Exception as exc:
            log.debug("status of %s not written: %s", pod["metadata"]["name"], exc)

    def _flush_statuses(self) -> None:
        """The pass's status writes in a few transactions (each a compare-and-swap on the pod's revision),
        not two round trips per pod one after the other: during a burst these writes paced Ready."""
        queued, self._queued = self._queued or [], None
        if not queued:
            return
        try:
            done = self.store.update_statuses([(pod, status) for pod, status, _f in queued])
        except Exception as exc:
            log.debug("%d pod statuses not written: %s", len(queued), exc)
            return
        for (pod, _status, fingerprint), ok in zip(queued, done, strict=True):
            if ok:
                self.last_status[pod["metadata"]["uid"]] = fingerprint


def _pods_per_node(pods: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in pods:
        n = p.get("spec", {}).get("nodeName")
        if n:
            counts[n] = counts.get(n, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="membrane-lab-kubelet")
    parser.add_argument("--lab", required=True)
    parser.add_argument("--cluster", default="default")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s kubelet %(message)s")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # a pidfd per container (ExitWatch)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else max(soft, 65536), hard))
    kubelet = Kubelet(args.lab, args.cluster)
    signal.signal(signal.SIGTERM, lambda *_: (kubelet.stop_event.set(), kubelet.wake.set()))
    signal.signal(signal.SIGINT, lambda *_: (kubelet.stop_event.set(), kubelet.wake.set()))
    kubelet.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
