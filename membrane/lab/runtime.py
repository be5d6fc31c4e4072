"""The lab's container runtime: pod sandboxes (netns + pause process) and containers as host programs.

A sandbox is a named network namespace plus a pause process that also owns the pod's UTS namespace
(hostname = pod name) and a mount namespace in which ``/etc/netns/<netns>/resolv.conf`` and ``hosts``
are bound over ``/etc`` (``ip netns exec`` does that). Containers and ``membrane exec`` join the pause
process's namespaces with nsenter. Networking is done by calling the CNI plugin exactly as a runtime
does: CNI_* environment variables and the network configuration on stdin.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from membrane.lab.paths import LabPaths
from membrane.lab.processes import ProcRecord, is_alive, spawn, stop
from membrane.model.naming import NETNS_DIR, pod_hostname

CNI_VERSION = "1.0.0"


class CNIError(Exception):
    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        msg = obj.get("msg", "CNI failed")
        details = obj.get("details")
        super().__init__(f"{msg}{f' ({details})' if details else ''}")


@dataclass
class Sandbox:
    namespace: str
    name: str
    uid: str
    node: str
    netns: str
    container_id: str
    pause: ProcRecord | None = None
    ip: str = ""
    containers: dict[str, ProcRecord] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def netns_path(self) -> str:
        return f"{NETNS_DIR}/{self.netns}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace, "name": self.name, "uid": self.uid, "node": self.node,
            "netns": self.netns, "container_id": self.container_id, "ip": self.ip,
            "pause": self.pause.to_dict() if self.pause else None,
            "containers": {k: v.to_dict() for k, v in self.containers.items()},
            "restarts": self.restarts,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sandbox:
        return cls(
            d["namespace"], d["name"], d["uid"], d["node"], d["netns"], d["container_id"],
            ProcRecord.from_dict(d["pause"]) if d.get("pause") else None, d.get("ip", ""),
            {k: ProcRecord.from_dict(v) for k, v in d.get("containers", {}).items()},
            dict(d.get("restarts", {})),
        )


def container_id_for(uid: str) -> str:
    return hashlib.sha256(f"sandbox/{uid}".encode()).hexdigest()


def cni_binary() -> str:
    """The compiled plugin (``make setup`` builds membrane-cni-shim next to the venv's python) when it is
    there, else the Python one; ``MEMBRANE_CNI_PLUGIN=python`` forces the Python one (to compare them)."""
    bindir = os.path.dirname(sys.executable)
    shim = os.path.join(bindir, "membrane-cni-shim")
    if os.environ.get("MEMBRANE_CNI_PLUGIN") != "python" and os.access(shim, os.X_OK):
        return shim
    return os.path.join(bindir, "membrane-cni")


def pause_binary() -> str | None:
    """The compiled pause (``make setup`` builds membrane-pause next to the venv's python), else None: the
    sandbox is then made with ``ip netns add`` + ``ip netns exec … unshare … sleep``.
    ``MEMBRANE_LAB_PAUSE=shell`` forces the latter (to compare them)."""
    path = os.path.join(os.path.dirname(sys.executable), "membrane-pause")
    if os.environ.get("MEMBRANE_LAB_PAUSE") != "shell" and os.access(path, os.X_OK):
        return path
    return None


def _spawn_pause(binary: str, netns: str, hostname: str, log_path: str, timeout: float = 10) -> ProcRecord:
    """Start membrane-pause and wait for its ready byte; its log's last line is the error if it exits first."""
    read_end, write_end = os.pipe()
    try:
        try:
            rec = spawn([binary, netns, hostname, str(write_end)], log_path, pass_fds=(write_end,))
        finally:
            os.close(write_end)
        poller = select.poll()  # not select(): the kubelet holds a descriptor per container (ExitWatch), > 1024
        poller.register(read_end, select.POLLIN)
        if poller.poll(timeout * 1000) and os.read(read_end, 1) == b"1":
            return rec
    finally:
        os.close(read_end)
    stop(rec, timeout=1)
    try:
        with open(log_path, errors="replace") as fh:
            reason = (fh.read()[-4096:].strip().splitlines() or [""])[-1]
    except OSError:
        reason = ""
    raise RuntimeError(f"pod sandbox did not start: {reason or 'membrane-pause not ready'}")


class Runtime:
    def __init__(self, lab: str) -> None:
        self.paths = LabPaths(lab)
        self.records_dir = f"{self.paths.run_dir}/pods"
        os.makedirs(self.records_dir, exist_ok=True)

    # ---- records -----------------------------------------------------------------------------------
    def _record_path(self, uid: str) -> str:
        return f"{self.records_dir}/{uid}.json"

    def save(self, sb: Sandbox) -> None:
        tmp = self._record_path(sb.uid) + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(json.dumps(sb.to_dict()))  # one C-encoder call; json.dump streams small chunks through Python
        os.replace(tmp, self._record_path(sb.uid))

    def load_all(self) -> list[Sandbox]:
        out = []
        for entry in sorted(os.listdir(self.records_dir)):
            if entry.endswith(".json"):
                try:
                    with open(f"{self.records_dir}/{entry}") as fh:
                        out.append(Sandbox.from_dict(json.load(fh)))
                except (OSError, ValueError, KeyError):
                    continue
        return out

    # ---- sandboxes ---------------------------------------------------------------------------------
    def new_sandbox(self, pod: dict[str, Any], node: str) -> Sandbox:
        meta = pod["metadata"]
        return Sandbox(meta["namespace"], meta["name"], meta["uid"], node,
                       self.paths.pod_netns(meta["namespace"], meta["name"]), container_id_for(meta["uid"]))

    def create_sandbox(self, sb: Sandbox, resolv_conf: str, dns_search: str = "") -> None:
        """Netns, /etc/netns files and the pause process (hostname = pod name)."""
        etc = f"/etc/netns/{sb.netns}"
        os.makedirs(etc, exist_ok=True)
        with open(f"{etc}/resolv.conf", "w") as fh:
            fh.write(resolv_conf)
        with open(f"{etc}/hosts", "w") as fh:
            fh.write(f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n# pod {sb.key}\n")
        log_path = self.paths.pod_log(sb.namespace, sb.name)
        pause = pause_binary()
        if pause is not None:
            sb.pause = _spawn_pause(pause, sb.netns, pod_hostname(sb.name), log_path)
        else:
            if not os.path.exists(sb.netns_path):
                subprocess.run(["ip", "netns", "add", sb.netns], check=True, capture_output=True)
            # No `ip link set lo up` here: the CNI ADD that follows brings lo up with the pod's interface
            # (one process exec less per pod start).
            sb.pause = spawn(
                ["ip", "netns", "exec", sb.netns, "unshare", "--uts", "--", "sh", "-c",
                 'hostname "$1" && exec sleep infinity', "pause", pod_hostname(sb.name)],
                log_path,
            )
        self.save(sb)

    def pause_ready(self, sb: Sandbox) -> bool:
        """The pause process has finished setting up (it is sleeping in its own UTS namespace)."""
        if sb.pause is None or not is_alive(sb.pause):
            return False
        try:
            return os.stat(f"/proc/{sb.pause.pid}/ns/uts").st_ino != os.stat("/proc/self/ns/uts").st_ino and \
                os.readlink(f"/proc/{sb.pause.pid}/exe").endswith(("sleep", "membrane-pause"))
        except OSError:
            return False

    def cni(self, command: str, sb: Sandbox, agent_socket: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        netconf: dict[str, Any] = {
            "cniVersion": CNI_VERSION, "name": "membrane", "type": "membrane-cni", "agentSocket": agent_socket,
        }
        if extra:
            netconf.update(extra)
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": sb.container_id,
            "CNI_NETNS": sb.netns_path,
            "CNI_IFNAME": "eth0",
            "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE={sb.namespace};K8S_POD_NAME={sb.name};"
                        f"K8S_POD_INFRA_CONTAINER_ID={sb.container_id};K8S_POD_UID={sb.uid}",
            "CNI_PATH": os.path.dirname(cni_binary()),
        }
        proc = subprocess.run([cni_binary()], input=json.dumps(netconf).encode(), env=env,
                              capture_output=True, timeout=120)
        out = proc.stdout.decode().strip()
        if proc.returncode != 0:
            try:
                raise CNIError(json.loads(out))
            except ValueError:
                raise CNIError({"code": 999, "msg": out or proc.stderr.decode().strip() or "CNI plugin failed"}) from None
        return json.loads(out) if out else {}

    def start_container(self, sb: Sandbox, name: str, argv: list[str], env: dict[str, str]) -> ProcRecord:
        assert sb.pause is not None
        full_env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "HOSTNAME": pod_hostname(sb.name),
                    "PYTHONDONTWRITEBYTECODE": "1", "MEMBRANE_LAB": self.paths.lab, **env}
        log_path = self.paths.pod_log(sb.namespace, sb.name, name)
        if sb.restarts.get(name):  # a restart: the exited container's output is its `logs --previous`
            with contextlib.suppress(FileNotFoundError):
                os.replace(log_path, log_path + ".previous")
        rec = spawn(["nsenter", "-t", str(sb.pause.pid), "--net", "--uts", "--mount", "--", *argv],
                    log_path, env=full_env)
        sb.containers[name] = rec
        self.save(sb)
        return rec

    def stop_container(self, sb: Sandbox, name: str, timeout: float = 3) -> None:
        """SIGTERM, and SIGKILL after ``timeout`` seconds (a pod's grace period when it is deleted)."""
        rec = sb.containers.pop(name, None)
        if rec is not None:
            stop(rec, timeout=timeout)

    def destroy(self, sb: Sandbox, agent_socket: str) -> str:
        """Stop containers, CNI DEL, stop pause, delete netns and files. Returns a CNI error, if any."""
        for name in list(sb.containers):
            self.stop_container(sb, name)
        error = ""
        try:
            self.cni("DEL", sb, agent_socket)
        except (CNIError, subprocess.TimeoutExpired) as exc:
            error = str(exc)
        if sb.pause is not None:
            stop(sb.pause, timeout=3)
        subprocess.run(["ip", "netns", "del", sb.netns], capture_output=True)
        shutil.rmtree(f"/etc/netns/{sb.netns}", ignore_errors=True)
        if not error:
            try:
                os.unlink(self._record_path(sb.uid))
            except FileNotFoundError:
                pass
        return error

    def listening_tcp_ports(self, sb: Sandbox) -> set[int]:
        """TCP ports in LISTEN state inside the pod's network namespace (via the pause process's /proc)."""
        if sb.pause is None:
            return set()
        ports = set()
        for table in ("tcp", "tcp6"):
            try:
                with open(f"/proc/{sb.pause.pid}/net/{table}") as fh:
                    next(fh)
                    for line in fh:
                        parts = line.split()
                        if parts[3] == "0A":
                            ports.add(int(parts[1].rsplit(":", 1)[1], 16))
            except (OSError, StopIteration):
                continue
        return ports
