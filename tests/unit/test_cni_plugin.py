"""membrane-cni end to end against a fake agent: a real HTTP server on a unix socket in a temp dir."""

from __future__ import annotations

import io
import json
import os
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from membrane.api.cni_result import build_add_result
from membrane.cni.main import main

REPO = Path(__file__).resolve().parents[2]
CONTAINER_ID = "3f2a9c1e0b7d"
NETNS = "/run/netns/lab-pod-x"
ARGS = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1;K8S_POD_INFRA_CONTAINER_ID=3f2a9c1e0b7d;IgnoreUnknown=1"


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class FakeAgent:
    """Answers ``POST /v1/cni/<cmd>`` with ``replies[cmd] = (status, body)`` and records each request."""

    def __init__(self) -> None:
        # mkdtemp under /tmp keeps the path well below the 108-byte sun_path limit.
        self.dir = tempfile.mkdtemp(prefix="mcni-")
        self.socket_path = os.path.join(self.dir, "agent.sock")
        self.requests: list[tuple[str, Any]] = []
        self.replies: dict[str, tuple[int, Any]] = {}
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", "0"))
                agent.requests.append((self.path, json.loads(self.rfile.read(length) or b"null")))
                status, reply = agent.replies.get(self.path.rsplit("/", 1)[-1], (200, {}))
                payload = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        try:
            self.server = _Server(self.socket_path, Handler)
        except OSError:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def agent():
    fake = FakeAgent()
    try:
        yield fake
    finally:
        fake.close()


def netconf(socket_path: str, **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {"cniVersion": "1.0.0", "name": "membrane", "type": "membrane-cni",
                            "agentSocket": socket_path}
    conf.update(extra)
    return conf


def env(command: str, **overrides: str | None) -> dict[str, str]:
    base = {"CNI_COMMAND": command, "CNI_CONTAINERID": CONTAINER_ID, "CNI_NETNS": NETNS,
            "CNI_IFNAME": "eth0", "CNI_ARGS": ARGS, "CNI_PATH": "/opt/cni/bin"}
    for key, value in overrides.items():
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value
    return base


def invoke(environ: dict[str, str], stdin: bytes | dict[str, Any]) -> tuple[int, str, str]:
    raw = stdin if isinstance(stdin, bytes) else json.dumps(stdin).encode()
    out, err = io.StringIO(), io.StringIO()
    rc = main(environ=environ, stdin=io.BytesIO(raw), stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


def error_of(rc: int, out: str) -> dict[str, Any]:
    assert rc != 0
    obj = json.loads(out)
    assert set(obj) <= {"cniVersion", "code", "msg", "details"}
    return obj


ADD_RESULT = build_add_result("1.0.0", "eth0", "lxc3f2a9c1e", "0a:00:00:00:00:01", "0a:00:00:00:00:02",
                              NETNS, "10.0.1.23", 32, "10.0.1.1")


def test_add_forwards_request_and_prints_result(agent):
    agent.replies["add"] = (200, {"result": ADD_RESULT})
    conf = netconf(agent.socket_path)
    rc, out, _ = invoke(env("ADD"), conf)
    assert rc == 0
    assert json.loads(out) == ADD_RESULT
    path, body = agent.requests[0]
    assert path == "/v1/cni/add"
    assert body == {
        "containerID": CONTAINER_ID, "netns": NETNS, "ifname": "eth0",
        "args": {"K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": "web-1",
                 "K8S_POD_INFRA_CONTAINER_ID": CONTAINER_ID, "IgnoreUnknown": "1"},
        "netconf": conf,
    }


def test_add_result_without_version_gets_netconf_version(agent):
    result = {k: v for k, v in ADD_RESULT.items() if k != "cniVersion"}
    agent.replies["add"] = (200, {"result": result})
    rc, out, _ = invoke(env("ADD"), netconf(agent.socket_path, cniVersion="1.1.0"))
    assert rc == 0 and json.loads(out)["cniVersion"] == "1.1.0"


def test_add_reply_without_result_is_io_error(agent):
    agent.replies["add"] = (200, {"nope": 1})
    rc, out, _ = invoke(env("ADD"), netconf(agent.socket_path))
    assert error_of(rc, out)["code"] == 5


def test_add_reply_not_json_is_io_error(agent):
    agent.replies["add"] = (200, b"<html>")
    rc, out, _ = invoke(env("ADD"), netconf(agent.socket_path))
    assert error_of(rc, out)["code"] == 5


def test_agent_error_object_passes_through(agent):
    agent.replies["add"] = (409, {"code": 7, "msg": "Invalid Configuration", "details": "pool exhausted"})
    rc, out, _ = invoke(env("ADD"), netconf(agent.socket_path))
    assert json.loads(out) == {"cniVersion": "1.0.0", "code": 7, "msg": "Invalid Configuration",
                               "details": "pool exhausted"}
    assert rc == 1


def test_agent_error_without_code_is_internal(agent):
    agent.replies["add"] = (500, {"error": "boom"})
    rc, out, _ = invoke(env("ADD"), netconf(agent.socket_path))
    err = error_of(rc, out)
    assert err["code"] == 999 and "HTTP 500" in err["details"]


def test_agent_503_without_code_is_try_again(agent):
    agent.replies["add"] = (503, {"error": "starting"})
    rc, out, _ = invoke(env("ADD"), netconf(agent.socket_path))
    assert error_of(rc, out)["code"] == 11


@pytest.mark.parametrize("command", ["DEL", "CHECK"])
def test_del_and_check_print_nothing_on_success(agent, command):
    agent.replies[command.lower()] = (200, {})
    rc, out, _ = invoke(env(command), netconf(agent.socket_path))
    assert (rc, out) == (0, "")
    assert agent.requests[0][0] == f"/v1/cni/{command.lower()}"


def test_del_is_idempotent_when_agent_says_ok(agent):
    agent.replies["del"] = (200, {})
    for _ in range(2):
        rc, out, _ = invoke(env("DEL", CNI_NETNS=None), netconf(agent.socket_path))
        assert (rc, out) == (0, "")
    assert len(agent.requests) == 2
    assert agent.requests[1][1]["netns"] == ""


def test_status_and_gc(agent):
    rc, out, _ = invoke(env("STATUS"), netconf(agent.socket_path, cniVersion="1.1.0"))
    assert (rc, out) == (0, "")
    attachments = [{"containerID": CONTAINER_ID, "ifname": "eth0"}]
    conf = netconf(agent.socket_path, cniVersion="1.1.0", **{"cni.dev/valid-attachments": attachments})
    rc, out, _ = invoke(env("GC"), conf)
    assert (rc, out) == (0, "")
    assert agent.requests[1][0] == "/v1/cni/gc"
    assert agent.requests[1][1]["netconf"]["cni.dev/valid-attachments"] == attachments


def test_gc_accepts_the_older_attachments_key(agent):
    conf = netconf(agent.socket_path, cniVersion="1.1.0", **{"cni.dev/attachments": []})
    rc, _, _ = invoke(env("GC"), conf)
    assert rc == 0
    assert agent.requests[0][1]["netconf"]["cni.dev/valid-attachments"] == []


def test_status_error_passes_through(agent):
    agent.replies["status"] = (503, {"code": 51, "msg": "limited connectivity"})
    rc, out, _ = invoke(env("STATUS"), netconf(agent.socket_path, cniVersion="1.1.0"))
    assert error_of(rc, out)["code"] == 51


@pytest.mark.parametrize("command,code", [("ADD", 11), ("CHECK", 11), ("DEL", 11), ("GC", 11), ("STATUS", 50)])
def test_unreachable_agent(command, code, tmp_path):
    conf = netconf(str(tmp_path / "missing.sock"), cniVersion="1.1.0", **{"cni.dev/valid-attachments": []})
    rc, out, _ = invoke(env(command), conf)
    err = error_of(rc, out)
    assert err["code"] == code and "missing.sock" in err["details"]


def test_version_needs_no_agent_and_no_stdin():
    rc, out, _ = invoke({"CNI_COMMAND": "VERSION"}, b"")
    assert rc == 0
    assert json.loads(out) == {"cniVersion": "1.1.0",
                               "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}


def test_no_command_prints_about_to_stderr():
    rc, out, err = invoke({}, b"")
    assert (rc, out) == (0, "")
    assert "membrane-cni" in err and "1.1.0" in err


ENV_ERRORS = [
    ({"CNI_COMMAND": "FROB"}, 4, "unknown CNI_COMMAND: FROB"),
    ({"CNI_CONTAINERID": None}, 4, "required env variables [CNI_CONTAINERID] missing"),
    ({"CNI_NETNS": None}, 4, "required env variables [CNI_NETNS] missing"),
    ({"CNI_IFNAME": None, "CNI_NETNS": None}, 4, "required env variables [CNI_NETNS,CNI_IFNAME] missing"),
    ({"CNI_CONTAINERID": "-bad"}, 4, "invalid characters in containerID"),
    ({"CNI_CONTAINERID": "a b"}, 4, "invalid characters in containerID"),
    ({"CNI_IFNAME": "a" * 16}, 4, "interface name is too long"),
    ({"CNI_IFNAME": ".."}, 4, "interface name is . or .."),
    ({"CNI_IFNAME": "eth/0"}, 4, "interface name contains / or : or whitespace characters"),
    ({"CNI_ARGS": "K8S_POD_NAME"}, 4, "invalid CNI_ARGS"),
    ({"CNI_ARGS": "FOO=1"}, 4, "invalid CNI_ARGS"),
    ({"CNI_ARGS": "FOO=1;IgnoreUnknown=maybe"}, 4, "invalid CNI_ARGS"),
]


@pytest.mark.parametrize("overrides,code,msg", ENV_ERRORS)
def test_environment_errors(agent, overrides, code, msg):
    rc, out, _ = invoke(env(overrides.pop("CNI_COMMAND", "ADD"), **overrides), netconf(agent.socket_path))
    err = error_of(rc, out)
    assert (err["code"], err["msg"]) == (code, msg)
    assert agent.requests == []


def test_del_does_not_need_netns(agent):
    rc, _, _ = invoke(env("DEL", CNI_NETNS=None), netconf(agent.socket_path))
    assert rc == 0


NETCONF_ERRORS = [
    (b"{not json", 6, "error unmarshall network config"),
    (b"\xff\xfe", 6, "error unmarshall network config"),
    (b"[1, 2]", 6, "error unmarshall network config"),
    ({"name": None}, 7, "missing network name"),
    ({"name": "bad name"}, 7, "invalid characters found in network name"),
    ({"cniVersion": "0.2.0"}, 1, "incompatible CNI versions"),
    ({"cniVersion": None}, 1, "incompatible CNI versions"),  # missing reads as 0.1.0
    ({"cniVersion": 1}, 6, "error unmarshall network config"),
    ({"type": "bridge"}, 7, "unexpected plugin type"),
    ({"agentSocket": None}, 7, "missing agentSocket"),
    ({"agentSocket": "run/agent.sock"}, 7, "agentSocket must be an absolute path"),
    ({"ipam": {"type": "host-local"}}, 2, 'unsupported field "ipam": {"type": "host-local"}'),
]


@pytest.mark.parametrize("stdin,code,msg", NETCONF_ERRORS)
def test_netconf_errors(agent, stdin, code, msg):
    if isinstance(stdin, dict):
        conf = netconf(agent.socket_path, **stdin)
        stdin = {k: v for k, v in conf.items() if v is not None}
    rc, out, _ = invoke(env("ADD"), stdin)
    err = error_of(rc, out)
    assert (err["code"], err["msg"]) == (code, msg)
    assert agent.requests == []


@pytest.mark.parametrize("command,version", [("CHECK", "0.3.1"), ("STATUS", "1.0.0"), ("GC", "1.0.0")])
def test_command_needs_newer_version(agent, command, version):
    conf = netconf(agent.socket_path, cniVersion=version, **{"cni.dev/valid-attachments": []})
    rc, out, _ = invoke(env(command), conf)
    err = error_of(rc, out)
    assert (err["code"], err["msg"]) == (1, f"config version does not allow {command}")
    assert err["cniVersion"] == version
    assert agent.requests == []


@pytest.mark.parametrize("attachments", [None, "x", [{"containerID": "a"}], [["a", "eth0"]]])
def test_gc_attachment_list_is_validated(agent, attachments):
    conf = netconf(agent.socket_path, cniVersion="1.1.0")
    if attachments is not None:
        conf["cni.dev/valid-attachments"] = attachments
    rc, out, _ = invoke(env("GC"), conf)
    assert error_of(rc, out)["code"] == 7
    assert agent.requests == []


def test_error_uses_latest_version_when_requested_one_is_unsupported(agent):
    rc, out, _ = invoke(env("ADD"), netconf(agent.socket_path, cniVersion="9.9.9"))
    err = error_of(rc, out)
    assert err["cniVersion"] == "1.1.0" and '"9.9.9"' in err["details"]


def test_executable_module_end_to_end(agent):
    """``python -m membrane.cni.main`` in a child process, as a runtime would exec it."""
    agent.replies["add"] = (200, {"result": ADD_RESULT})
    proc = subprocess.run(
        [sys.executable, "-m", "membrane.cni.main"], input=json.dumps(netconf(agent.socket_path)).encode(),
        env={**env("ADD"), "PYTHONPATH": str(REPO)}, capture_output=True, timeout=30, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout) == ADD_RESULT


def test_plugin_import_stays_light():
    code = ("import sys, membrane.cni.main; "
            "print(sorted(m for m in ('yaml', 'pyroute2', 'membrane.store', 'membrane.datapath', 'ctypes') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=30, check=True)
    assert proc.stdout.strip() == "[]"
