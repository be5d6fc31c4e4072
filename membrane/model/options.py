"""Daemon options from three sources: a config file, MEMBRANE_* environment variables and flags.

A daemon declares its options once (:class:`Option`); from that list come its ``--help``, the keys
its config file may hold (the flag name without dashes, e.g. ``etcd-endpoints``), and its
environment variables (``MEMBRANE_ETCD_ENDPOINTS``). Later sources win: defaults < file < env <
flags. Pure: the caller reads the file and passes its text; bad input raises OptionError naming the
source, the key and the reason.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

ENV_PREFIX = "MEMBRANE_"


class OptionError(ValueError):
    """A bad option: ``str()`` says where (file, env var or flag), which key and why."""


@dataclass(frozen=True)
class Option:
    name: str  # flag name without the leading dashes; also the config file key
    help: str
    default: Any = None
    kind: str = "str"  # str | list (comma-separated in env/flags) | bool | int
    required: bool = False

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper().replace("-", "_")

    @property
    def attr(self) -> str:
        return self.name.replace("-", "_")


def build_parser(prog: str, description: str, options: Sequence[Option]) -> argparse.ArgumentParser:
    """The daemon's argument parser: every option as a flag, its env variable and default in the help."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     epilog="Each flag can also be set in the config file (same name without "
                                            "the dashes) or as MEMBRANE_<NAME> in the environment; flags win "
                                            "over the environment, which wins over the file.")
    parser.add_argument("--config-file", default=None, metavar="PATH",
                        help="YAML or JSON file of options (env: MEMBRANE_CONFIG_FILE)")
    for opt in options:
        shown = ",".join(opt.default) if opt.kind == "list" else opt.default
        default = f"default: {shown!r}" if not opt.required else "required"
        text = f"{opt.help} (env: {opt.env}; {default})"
        if opt.kind == "bool":
            parser.add_argument(opt.flag, dest=opt.attr, action="store_const", const=True, default=None, help=text)
        else:
            parser.add_argument(opt.flag, dest=opt.attr, default=None, metavar=opt.name.split("-")[-1].upper(),
                                help=text + (" (comma-separated)" if opt.kind == "list" else ""))
    return parser


def parse_file_text(text: str, where: str) -> dict[str, Any]:
    """The options of a config file (YAML, of which JSON is a subset): a mapping of option names."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise OptionError(f"{where}: not valid YAML or JSON: {exc}") from None
    if not isinstance(data, dict):
        raise OptionError(f"{where}: must be a mapping of option names to values, not {type(data).__name__}")
    return data


def _coerce(opt: Option, value: Any, where: str) -> Any:
    if opt.kind == "list":
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            items = list(value)
        else:
            raise OptionError(f"{where}: {opt.name}: expected a list of strings, got {json.dumps(value)}")
        return tuple(items)
    if opt.kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no", ""):
            return value.lower() in ("1", "true", "yes")
        raise OptionError(f"{where}: {opt.name}: expected true or false, got {value!r}")
    if opt.kind == "int":
        try:
            return int(value)
        except (TypeError, ValueError):
            raise OptionError(f"{where}: {opt.name}: expected an integer, got {value!r}") from None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise OptionError(f"{where}: {opt.name}: expected a string, got {json.dumps(value)}")
    return str(value)


def resolve(options: Sequence[Option], *, flags: argparse.Namespace, environ: Mapping[str, str],
            file_data: Mapping[str, Any] | None = None, file_name: str = "") -> dict[str, Any]:
    """Each option's value (by attribute name) from defaults < file < env < flags."""
    by_name = {o.name: o for o in options}
    out: dict[str, Any] = {o.attr: o.default for o in options}
    for key, value in (file_data or {}).items():
        opt = by_name.get(str(key))
        if opt is None:
            raise OptionError(f"{file_name}: {key}: unknown option (known: {', '.join(sorted(by_name))})")
        out[opt.attr] = _coerce(opt, value, file_name)
    for opt in options:
        if opt.env in environ:
            out[opt.attr] = _coerce(opt, environ[opt.env], f"environment {opt.env}")
        flag_value = getattr(flags, opt.attr, None)
        if flag_value is not None:
            out[opt.attr] = _coerce(opt, flag_value, f"flag {opt.flag}")
    for opt in options:
        if opt.required and not out[opt.attr]:
            raise OptionError(f"{opt.name}: required (flag {opt.flag}, env {opt.env} or key "
                              f"{opt.name!r} in the config file)")
    return out
