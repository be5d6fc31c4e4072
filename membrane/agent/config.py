"""Loading ``membrane-agent``'s configuration: flags, then MEMBRANE_* variables, then the config
file (``--config-file``), then defaults. The options and the AgentConfig type are in
membrane.api.agent_config (the lab builds the same type for each of its daemons)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from membrane.api.agent_config import AGENT_OPTIONS, AgentConfig
from membrane.api.config_file import config_file_path, read_config_file
from membrane.model.options import build_parser, resolve

__all__ = ["AGENT_OPTIONS", "AgentConfig", "load_agent_config"]


def load_agent_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Flags (``argv``), then MEMBRANE_* variables, then the config file, then defaults.
    Raises OptionError naming the file, variable or flag that is wrong."""
    env = dict(os.environ if environ is None else environ)
    args = build_parser("membrane-agent", "Membrane node agent", AGENT_OPTIONS).parse_args(argv)
    path = config_file_path(args.config_file, env)
    file_data = read_config_file(path)
    values = resolve(AGENT_OPTIONS, flags=args, environ=env, file_data=file_data, file_name=f"config file {path}")
    return AgentConfig(**values)
