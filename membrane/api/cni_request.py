"""One CNI invocation read from the environment and stdin, validated the way libcni's skel does.

Shared by the Python plugin (membrane.cni.main) and the agent's ``POST /v1/cni/exec``, which runs the
same validation for the compiled plugin (cni/membrane-cni-shim.c).

Every problem raises CNIError with the spec's code: 4 for the environment, 6 for undecodable stdin,
7 for a bad network configuration, 2 for a field this plugin does not support, 1 for versions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from membrane.api.cni_args import check_known_args, parse_cni_args
from membrane.api.cni_errors import (
    DECODING_FAILURE,
    INVALID_ENVIRONMENT,
    INVALID_NETWORK_CONFIG,
    UNKNOWN_CONTAINER,
    UNSUPPORTED_FIELD,
    CNIError,
)
from membrane.api.cni_versions import check_version

COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")
PLUGIN_TYPES = ("membrane-cni", "membrane")
VALID_ATTACHMENTS = "cni.dev/valid-attachments"
# libcni >= 1.2 sets both keys for GC; older drafts of the spec used the second one.
ATTACHMENTS_ALIAS = "cni.dev/attachments"

# Which variables each command needs (CNI spec, section 2, "Parameters").
REQUIRED_ENV = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
}

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ID_CHARS = _ALNUM | frozenset("_.-")
IFNAMSIZ = 16


def _valid_id(text: str) -> bool:
    """libcni's ``^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$`` for container IDs and network names (no ``re``: the
    plugin execs once per pod and every import counts)."""
    return bool(text) and text[0] in _ALNUM and all(ch in _ID_CHARS for ch in text)


class CNIRequest:
    """One invocation (a plain class, not a dataclass: ``dataclasses`` imports ``inspect``)."""

    def __init__(self, command: str, container_id: str = "", netns: str = "", ifname: str = "",
                 args: dict[str, str] | None = None, netconf: dict[str, Any] | None = None) -> None:
        self.command = command
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        self.args: dict[str, str] = {} if args is None else args
        self.netconf: dict[str, Any] = {} if netconf is None else netconf

    def __repr__(self) -> str:
        return (f"CNIRequest(command={self.command!r}, container_id={self.container_id!r}, netns={self.netns!r}, "
                f"ifname={self.ifname!r}, args={self.args!r}, netconf={self.netconf!r})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CNIRequest) and vars(self) == vars(other)

    @property
    def cni_version(self) -> str:
        return str(self.netconf.get("cniVersion", ""))

    @property
    def agent_socket(self) -> str:
        return str(self.netconf["agentSocket"])

    def wire_body(self) -> dict[str, Any]:
        """The JSON body of ``POST /v1/cni/<command>`` sent to the agent."""
        return {
            "containerID": self.container_id,
            "netns": self.netns,
            "ifname": self.ifname,
            "args": dict(self.args),
            "netconf": self.netconf,
        }


def validate_container_id(container_id: str) -> None:
    if not container_id:
        raise CNIError(UNKNOWN_CONTAINER, "missing containerID")
    if not _valid_id(container_id):
        raise CNIError(INVALID_ENVIRONMENT, "invalid characters in containerID",
                       f"CNI_CONTAINERID {container_id!r}: must start with a letter or digit, then only "
                       "letters, digits, '_', '.' and '-'")


def validate_ifname(ifname: str) -> None:
    if not ifname:
        raise CNIError(INVALID_ENVIRONMENT, "interface name is empty", "CNI_IFNAME is empty")
    if len(ifname) > IFNAMSIZ - 1:
        raise CNIError(INVALID_ENVIRONMENT, "interface name is too long",
                       f"CNI_IFNAME {ifname!r}: interface name should be less than {IFNAMSIZ} characters")
    if ifname in (".", ".."):
        raise CNIError(INVALID_ENVIRONMENT, "interface name is . or ..", f"CNI_IFNAME {ifname!r}")
    if any(ch in "/:" or ch.isspace() for ch in ifname):
        raise CNIError(INVALID_ENVIRONMENT, "interface name contains / or : or whitespace characters",
                       f"CNI_IFNAME {ifname!r}")


def read_environment(environ: Mapping[str, str]) -> CNIRequest:
    """Command and per-command variables; raises CNIError (code 4, or 3 for an empty container ID)."""
    command = environ.get("CNI_COMMAND", "")
    if not command:
        raise CNIError(INVALID_ENVIRONMENT, "required env variables [CNI_COMMAND] missing")
    if command not in COMMANDS:
        raise CNIError(INVALID_ENVIRONMENT, f"unknown CNI_COMMAND: {command}",
                       f"CNI_COMMAND must be one of {', '.join(COMMANDS)}")
    required = REQUIRED_ENV.get(command, ())
    missing = [name for name in required if not environ.get(name)]
    if missing:
        raise CNIError(INVALID_ENVIRONMENT, f"required env variables [{','.join(missing)}] missing",
                       f"{command} needs {', '.join(required)}")
    request = CNIRequest(command=command)
    if command in REQUIRED_ENV:
        request.container_id = environ["CNI_CONTAINERID"]
        request.ifname = environ["CNI_IFNAME"]
        request.netns = environ.get("CNI_NETNS", "")
        validate_container_id(request.container_id)
        validate_ifname(request.ifname)
        try:
            request.args = parse_cni_args(environ.get("CNI_ARGS", ""))
            check_known_args(request.args)
        except ValueError as exc:
            raise CNIError(INVALID_ENVIRONMENT, "invalid CNI_ARGS", str(exc)) from None
    return request


def decode_netconf(raw: bytes) -> dict[str, Any]:
    """The stdin JSON object; raises CNIError code 6 when it is not one."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CNIError(DECODING_FAILURE, "error unmarshall network config", f"stdin: {exc}") from None
    if not isinstance(data, dict):
        raise CNIError(DECODING_FAILURE, "error unmarshall network config",
                       f"expected a JSON object on stdin, got {type(data).__name__}")
    return data


def validate_netconf(command: str, netconf: dict[str, Any]) -> None:
    """Name, version, type, agentSocket and the GC attachment list; raises CNIError."""
    name = netconf.get("name")
    if name is None or name == "":
        raise CNIError(INVALID_NETWORK_CONFIG, "missing network name", "netconf field \"name\" is required")
    if not isinstance(name, str) or not _valid_id(name):
        raise CNIError(INVALID_NETWORK_CONFIG, "invalid characters found in network name", repr(name))
    version = netconf.get("cniVersion", "0.1.0")  # libcni reads a missing cniVersion as 0.1.0
    if not isinstance(version, str):
        raise CNIError(DECODING_FAILURE, "error unmarshall network config",
                       f"cniVersion must be a string, got {json.dumps(version)}")
    if version == "":
        version = "0.1.0"
    check_version(command, version)
    plugin_type = netconf.get("type")
    if plugin_type not in PLUGIN_TYPES:
        raise CNIError(INVALID_NETWORK_CONFIG, "unexpected plugin type",
                       f"netconf field \"type\" is {json.dumps(plugin_type)}; expected one of {', '.join(PLUGIN_TYPES)}")
    socket_path = netconf.get("agentSocket")
    if not isinstance(socket_path, str) or not socket_path:
        raise CNIError(INVALID_NETWORK_CONFIG, "missing agentSocket",
                       "netconf field \"agentSocket\" must be the path of the agent's unix socket")
    if not socket_path.startswith("/"):
        raise CNIError(INVALID_NETWORK_CONFIG, "agentSocket must be an absolute path", repr(socket_path))
    if "ipam" in netconf:
        raise CNIError(UNSUPPORTED_FIELD, f"unsupported field \"ipam\": {json.dumps(netconf['ipam'])}",
                       "membrane allocates pod addresses in the agent; remove the ipam section")
    if command == "GC":
        _validate_attachments(netconf)


def _validate_attachments(netconf: dict[str, Any]) -> None:
    if VALID_ATTACHMENTS not in netconf and ATTACHMENTS_ALIAS in netconf:
        netconf[VALID_ATTACHMENTS] = netconf[ATTACHMENTS_ALIAS]
    attachments = netconf.get(VALID_ATTACHMENTS)
    if not isinstance(attachments, list):
        # Treating a missing list as "nothing is valid" would delete every pod's network: refuse.
        raise CNIError(INVALID_NETWORK_CONFIG, f"GC needs {VALID_ATTACHMENTS}",
                       f"netconf field {VALID_ATTACHMENTS!r} must be a list of {{containerID, ifname}}")
    for index, item in enumerate(attachments):
        if not (isinstance(item, dict) and isinstance(item.get("containerID"), str)
                and isinstance(item.get("ifname"), str)):
            raise CNIError(INVALID_NETWORK_CONFIG, f"invalid {VALID_ATTACHMENTS}",
                           f"item {index}: expected {{\"containerID\": str, \"ifname\": str}}, got {json.dumps(item)}")
