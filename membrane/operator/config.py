"""Loading ``membrane-operator``'s configuration: flags, then MEMBRANE_* variables, then the config
file (``--config-file``), then defaults. The options and the OperatorConfig type are in
membrane.api.operator_config (the lab builds the same type for each of its daemons)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from membrane.api.config_file import config_file_path, read_config_file
from membrane.api.operator_config import OPERATOR_OPTIONS, OperatorConfig
from membrane.model.options import build_parser, resolve

__all__ = ["OPERATOR_OPTIONS", "OperatorConfig", "load_operator_config"]


def load_operator_config(argv: Sequence[str] | None = None,
                         environ: Mapping[str, str] | None = None) -> OperatorConfig:
    env = dict(os.environ if environ is None else environ)
    args = build_parser("membrane-operator", "Membrane operator", OPERATOR_OPTIONS).parse_args(argv)
    path = config_file_path(args.config_file, env)
    file_data = read_config_file(path)
    return OperatorConfig(**resolve(OPERATOR_OPTIONS, flags=args, environ=env, file_data=file_data,
                                    file_name=f"config file {path}"))
