"""Drive a lab through the real ``membrane`` command, as a user would, and check it leaves nothing."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from typing import Any

from membrane.lab.paths import BPFFS_ROOT, LabPaths
from membrane.model.naming import NETNS_DIR

MEMBRANE = os.path.join(os.path.dirname(sys.executable), "membrane")


def unique_lab(prefix: str = "t") -> str:
    return f"{prefix}{secrets.token_hex(3)}"


class Lab:
    def __init__(self, name: str) -> None:
        self.name = name
        self.paths = LabPaths(name)

    def run(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([MEMBRANE, "--lab", self.name, *args], input=input, text=True,
                              capture_output=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"membrane {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def create(self, *extra: str) -> None:
        self.run("lab", "create", *extra, timeout=180)

    def delete(self) -> None:
        self.run("lab", "delete", check=False, timeout=120)

    def apply(self, manifest: str) -> subprocess.CompletedProcess[str]:
        return self.run("apply", "-f", "-", input=manifest)

    def get_json(self, *args: str) -> list[dict[str, Any]]:
        out = json.loads(self.run("get", *args, "-o", "json").stdout or "{}")
        if out.get("kind") == "List":
            return out["items"]
        return [out] if out else []

    def pod(self, name: str, ns: str = "default") -> dict[str, Any]:
        return self.get_json("pod", name, "-n", ns)[0]

    def wait_pods_ready(self, names: list[str], timeout: float = 60) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        pods: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            pods = {p["metadata"]["name"]: p for p in self.get_json("pods")}
            if all(n in pods and _ready(pods[n]) for n in names):
                return pods
            time.sleep(0.3)
        raise AssertionError(f"pods {names} not Ready in {timeout}s: "
                             + json.dumps({n: p.get("status") for n, p in pods.items()}, indent=1)[:3000])

    def wait_for(self, fn: Any, timeout: float = 30, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = fn()
            if last:
                return last
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what} (last: {last!r})")

    def exec(self, pod: str, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return self.run("exec", pod, "--", *cmd, check=check, timeout=timeout)

    def node_exec(self, node: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("lab", "exec", node, "--", *cmd, check=check)

    def agent_status(self, node: str) -> dict[str, Any]:
        """The agent's status, or {} while it cannot be reached (e.g. restarting)."""
        out = self.run("status", "--node", node, "-o", "json", check=False).stdout
        return json.loads(out) if out.strip() else {}

    def leftovers(self) -> list[str]:
        """Anything of this lab still on the machine."""
        found = []
        try:
            found += [f"netns {n}" for n in os.listdir(NETNS_DIR) if n.startswith(self.paths.netns_prefix)]
        except FileNotFoundError:
            pass
        if os.path.exists(f"{BPFFS_ROOT}/{self.name}"):
            found.append(f"bpffs {BPFFS_ROOT}/{self.name}")
        if os.path.exists(self.paths.run_dir):
            found.append(f"run dir {self.paths.run_dir}")
        try:
            found += [f"/etc/netns/{d}" for d in os.listdir("/etc/netns") if d.startswith(self.paths.netns_prefix)]
        except FileNotFoundError:
            pass
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if f"--lab {self.name} " in cmd + " " and "lab delete" not in cmd or self.paths.run_dir + "/" in cmd:
                found.append(f"process {entry}: {cmd[:120]}")
        return found


def _ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in pod.get("status", {}).get("conditions", []) or [])
