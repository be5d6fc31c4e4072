"""Loading ``membrane-agent``'s configuration: flags, then MEMBRANE_* variables, then the config
file (``--config-file``), then defaults. The options and the AgentConfig type are in
membrane.api.agent_config (the lab builds the same type for each of its daemons)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from membrane.api.agent_config import AGENT_OPTIONS, AgentConfig
from membrane.model.options import OptionError, build_parser, parse_file_text, resolve

__all__ = ["AGENT_OPTIONS", "AgentConfig", "load_agent_config"]


def load_agent_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Flags (``argv``), then MEMBRANE_* variables, then the config file, then defaults.
    Raises OptionError naming the file, variable or flag that is wrong."""
    env = dict(os.environ if environ is None else environ)
    args = build_parser("membrane-agent", "Membrane node agent", AGENT_OPTIONS).parse_args(argv)
    path = args.config_file or env.get("MEMBRANE_CONFIG_FILE", "")
    file_data = None
    if path:
        try:
            with open(path) as fh:
                text = fh.read()
        except OSError as exc:
            raise OptionError(f"config file {path}: {exc.strerror}") from None
        file_data = parse_file_text(text, f"config file {path}")
    values = resolve(AGENT_OPTIONS, flags=args, environ=env, file_data=file_data, file_name=f"config file {path}")
    return AgentConfig(**values)
