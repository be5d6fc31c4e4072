"""The compiled plugin (cni/membrane-cni-shim.c) against the Python one: same stdout, stderr and exit
status for the same environment and stdin, whichever path the shim takes.

Both are real executables run as the runtime runs them. The agent is the real agent API server
(membrane.agent.api) on a unix socket in a temp dir, with ``POST /v1/cni/<command>`` routed to canned
handlers and ``POST /v1/cni/exec`` to the real CNIExec over the same handlers. Each case also checks
which route the shim used: the fast path (exec) or the Python plugin it execs (``/v1/cni/<command>``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from membrane.agent.api import APIFailure, APIServer
from membrane.agent.cni_exec import CNIExec
from membrane.api.cni_result import build_add_result

REPO = Path(__file__).resolve().parents[2]
PYTHON_PLUGIN = os.path.join(os.path.dirname(sys.executable), "membrane-cni")
NETNS = "/run/netns/lab-pod-x"
ARGS = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1;IgnoreUnknown=1"
ADD_RESULT = build_add_result("1.0.0", "eth0", "lxc3f2a9c1e", "0a:00:00:00:00:01", "0a:00:00:00:00:02",
                              NETNS, "10.0.1.23", 32, "10.0.1.1")


class Agent:
    """The agent API with canned CNI handlers; ``calls`` lists the routes hit, in order."""

    def __init__(self, with_exec: bool = True) -> None:
        self.dir = tempfile.mkdtemp(prefix="mshim-")
        self.socket_path = os.path.join(self.dir, "agent.sock")
        self.calls: list[str] = []
        self.behaviour: dict[str, Callable[[Any], Any]] = {}
        self.api = APIServer(self.socket_path)
        handlers = {cmd: self._handler(cmd) for cmd in ("ADD", "DEL", "CHECK", "STATUS", "GC")}
        for cmd, handler in handlers.items():
            self.api.route("POST", f"/v1/cni/{cmd.lower()}", self._recorded(f"/v1/cni/{cmd.lower()}", handler))
        if with_exec:
            self.api.route("POST", "/v1/cni/exec", self._recorded("/v1/cni/exec", CNIExec(handlers).handle))
        self.api.start()

    def _recorded(self, route: str, handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def run(body: Any) -> Any:
            self.calls.append(route)
            return handler(body)
        return run

    def _handler(self, cmd: str) -> Callable[[Any], Any]:
        return lambda body: self.behaviour.get(cmd, lambda _b: {})(body)

    def close(self) -> None:
        self.api.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> str:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    out = tmp_path_factory.mktemp("shim") / "membrane-cni-shim"
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", f'-DMEMBRANE_CNI_FALLBACK="{PYTHON_PLUGIN}"',
                    "-o", str(out), str(REPO / "cni" / "membrane-cni-shim.c")], check=True)
    return str(out)


@pytest.fixture
def agent() -> Iterator[Agent]:
    fake = Agent()
    try:
        yield fake
    finally:
        fake.close()


def env(command: str | None, **overrides: str | None) -> dict[str, str]:
    base = {"PATH": "/usr/bin:/bin", "CNI_CONTAINERID": "3f2a9c1e0b7d", "CNI_NETNS": NETNS,
            "CNI_IFNAME": "eth0", "CNI_ARGS": ARGS, "CNI_PATH": "/opt/cni/bin"}
    if command is not None:
        base["CNI_COMMAND"] = command
    for key, value in overrides.items():
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value
    return base


def conf(socket_path: str, **extra: Any) -> bytes:
    netconf = {"cniVersion": "1.0.0", "name": "membrane", "type": "membrane-cni", "agentSocket": socket_path}
    netconf.update(extra)
    return json.dumps(netconf, indent=2).encode()


def run(binary: str, environ: dict[str, str], stdin: bytes) -> tuple[int, str, str]:
    proc = subprocess.run([binary], input=stdin, env=environ, capture_output=True, timeout=60)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def both(shim: str, agent: Agent, environ: dict[str, str], stdin: bytes) -> tuple[tuple[int, str, str], list[str]]:
    """Runs the Python plugin, then the shim; asserts the same answer; (that answer, the shim's routes)."""
    python = run(PYTHON_PLUGIN, environ, stdin)
    agent.calls.clear()
    compiled = run(shim, environ, stdin)
    assert compiled == python
    return compiled, list(agent.calls)


def _fail(status: int, body: dict[str, Any]) -> Callable[[Any], Any]:
    def handler(_body: Any) -> Any:
        raise APIFailure(status, body)
    return handler


def _boom(_body: Any) -> Any:
    raise RuntimeError("boom")


# ---- the fast path: the agent validates and answers, the shim only carries bytes ---------------------

FAST_CASES: dict[str, tuple[str, dict[str, Any], dict[str, str | None], Callable[[Any], Any] | None]] = {
    "add": ("ADD", {}, {}, lambda _b: {"result": ADD_RESULT}),
    "add result gets the netconf's version": (
        "ADD", {"cniVersion": "0.4.0"}, {}, lambda _b: {"result": {k: v for k, v in ADD_RESULT.items() if k != "cniVersion"}}),
    "add reply without result": ("ADD", {}, {}, lambda _b: {"nope": 1}),
    "agent error object": ("ADD", {}, {}, _fail(500, {"code": 100, "msg": "range full", "details": "10.0.1.0/24"})),
    "agent not ready": ("ADD", {}, {}, _fail(503, {"code": 11, "msg": "agent not ready", "details": "syncing"})),
    "agent 503 without code": ("ADD", {}, {}, _fail(503, {"error": "starting"})),
    "handler crash": ("ADD", {}, {}, _boom),
    "del": ("DEL", {}, {"CNI_NETNS": None}, None),
    "check fails": ("CHECK", {}, {}, _fail(500, {"code": 5, "msg": "veth lxc1 is missing"})),
    "missing container id": ("ADD", {}, {"CNI_CONTAINERID": None}, None),
    "bad interface name": ("ADD", {}, {"CNI_IFNAME": "a/b"}, None),
    "unknown CNI_ARGS": ("ADD", {}, {"CNI_ARGS": "FOO=1"}, None),
    "ipam section": ("ADD", {"ipam": {"type": "host-local"}}, {}, None),
    "wrong plugin type": ("DEL", {"type": "bridge"}, {}, None),
    "unsupported version": ("ADD", {"cniVersion": "9.9.9"}, {}, None),
    "quotes and control characters": ("ADD", {"note": "a \"quoted\"\\ \t\u0001 value"}, {"CNI_ARGS": "K8S_POD_NAME=\"x\"\t"}, None),
}


@pytest.mark.parametrize("case", list(FAST_CASES))
def test_fast_path_answers_like_the_python_plugin(shim: str, agent: Agent, case: str) -> None:
    command, extra, overrides, behaviour = FAST_CASES[case]
    if behaviour is not None:
        agent.behaviour[command] = behaviour
    _answer, routes = both(shim, agent, env(command, **overrides), conf(agent.socket_path, **extra))
    assert routes == ["/v1/cni/exec"]


def test_fast_add_prints_the_agent_result(shim: str, agent: Agent) -> None:
    agent.behaviour["ADD"] = lambda _b: {"result": ADD_RESULT}
    (rc, out, err), _routes = both(shim, agent, env("ADD"), conf(agent.socket_path))
    assert (rc, json.loads(out), err) == (0, ADD_RESULT, "")


def test_last_top_level_agent_socket_wins(shim: str, agent: Agent) -> None:
    """json.loads keeps the last of repeated keys, and a nested agentSocket is not the netconf's."""
    stdin = (b'{"cniVersion": "1.0.0", "agentSocket": "/nonexistent/a.sock", "name": "membrane", '
             b'"args": {"agentSocket": "/nonexistent/b.sock", "x": [1, {"y": null}]}, "type": "membrane-cni", '
             b'"agentSocket": "' + agent.socket_path.encode() + b'"}')
    agent.behaviour["ADD"] = lambda _b: {"result": ADD_RESULT}
    (rc, _out, _err), routes = both(shim, agent, env("ADD"), stdin)
    assert rc == 0 and routes == ["/v1/cni/exec"]


# ---- everything else goes to the Python plugin, with stdin intact --------------------------------------

def test_escaped_key_is_left_to_the_python_plugin(shim: str, agent: Agent) -> None:
    stdin = (b'{"cniVersion": "1.0.0", "name": "membrane", "type": "membrane-cni", '
             b'"agent\\u0053ocket": "' + agent.socket_path.encode() + b'"}')
    agent.behaviour["ADD"] = lambda _b: {"result": ADD_RESULT}
    (rc, _out, _err), routes = both(shim, agent, env("ADD"), stdin)
    assert rc == 0 and routes == ["/v1/cni/add"]


SLOW_CASES: dict[str, tuple[dict[str, str | None], Callable[[str], bytes]]] = {
    "not JSON": ({}, lambda _s: b"{not json"),
    "not an object": ({}, lambda _s: b"[1, 2]"),
    "empty stdin": ({}, lambda _s: b""),
    "no agentSocket": ({}, lambda _s: b'{"cniVersion": "1.0.0", "name": "membrane", "type": "membrane-cni"}'),
    "relative agentSocket": ({}, lambda _s: conf("agent.sock")),
    "agentSocket not a string": ({}, lambda _s: b'{"name": "membrane", "type": "membrane-cni", "agentSocket": 7}'),
    "agent unreachable": ({}, lambda _s: conf("/nonexistent/agent.sock")),
    "non-ASCII netconf": ({}, lambda s: conf(s).replace(b'"membrane"', '"n\u00e9t"'.encode())),
    "non-ASCII environment": ({"CNI_ARGS": "K8S_POD_NAME=p\u00e9"}, lambda s: conf(s)),
}


@pytest.mark.parametrize("case", list(SLOW_CASES))
def test_python_plugin_answers_what_the_shim_leaves(shim: str, agent: Agent, case: str) -> None:
    overrides, stdin = SLOW_CASES[case]
    _answer, routes = both(shim, agent, env("ADD", **overrides), stdin(agent.socket_path))
    assert "/v1/cni/exec" not in routes


@pytest.mark.parametrize("command", [None, "VERSION", "STATUS", "GC", "BOGUS"])
def test_other_commands_go_to_the_python_plugin(shim: str, agent: Agent, command: str | None) -> None:
    extra = {"cniVersion": "1.1.0", "cni.dev/valid-attachments": []}
    (_rc, out, err), routes = both(shim, agent, env(command), conf(agent.socket_path, **extra))
    if command in ("STATUS", "GC"):
        assert routes == [f"/v1/cni/{command.lower()}"]  # the Python plugin's POST
    else:
        assert routes == [] and (out or err)  # the version or the about text, or an error object


def test_agent_without_exec_route_gets_the_python_plugin(shim: str) -> None:
    old = Agent(with_exec=False)
    try:
        old.behaviour["ADD"] = lambda _b: {"result": ADD_RESULT}
        (rc, out, _err), routes = both(shim, old, env("ADD"), conf(old.socket_path))
        assert rc == 0 and json.loads(out) == ADD_RESULT
        assert routes == ["/v1/cni/add"]  # the shim's 404 is not recorded: no handler ran
    finally:
        old.close()


def test_large_stdin_reaches_the_python_plugin_whole(shim: str, agent: Agent) -> None:
    stdin = conf(agent.socket_path, padding="x" * (2 << 20))  # past the shim's 1 MiB fast-path limit
    agent.behaviour["ADD"] = lambda _b: {"result": ADD_RESULT}
    (rc, _out, _err), routes = both(shim, agent, env("ADD"), stdin)
    assert rc == 0 and routes == ["/v1/cni/add"]
