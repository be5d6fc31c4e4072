"""The CLI's shape: each command module registers its sub-parser with the handler that runs it, and
no CLI module imports a private (``_name``) name from another; only the lab commands import the lab."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from membrane.cli import bpf_cmds, dbg_config, metrics_cmds, observe, policy_cmds, workload_cmds
from membrane.cli.main import build_parser

CLI = Path(__file__).resolve().parents[2] / "membrane" / "cli"
LAB_COMMANDS = {"lab_cmds.py", "lab_helm_cmds.py"}


@pytest.mark.parametrize(("argv", "handler"), [
    (["bpf", "ipcache", "list"], bpf_cmds.run),
    (["policy", "get"], policy_cmds.run),
    (["observe"], observe.run),
    (["metrics", "list"], metrics_cmds.run),
    (["dbg", "config"], dbg_config.run),
    (["logs", "pod/x"], workload_cmds.run),
])
def test_a_command_carries_the_handler_its_module_registered(argv: list[str], handler: object) -> None:
    assert build_parser().parse_args(argv).handler is handler


def _imports(path: Path) -> list[ast.ImportFrom]:
    return [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom) and n.module]


def test_no_private_names_cross_cli_modules() -> None:
    private = [f"{p.name}: {node.module}.{alias.name}" for p in sorted(CLI.glob("*.py")) for node in _imports(p)
               if node.module.startswith("membrane.cli.")
               for alias in node.names if alias.name.startswith("_")]
    assert private == []


def test_only_the_lab_commands_import_the_lab() -> None:
    found = [f"{p.name}: {node.module}" for p in sorted(CLI.glob("*.py")) if p.name not in LAB_COMMANDS
             for node in _imports(p) if node.module == "membrane.lab" or node.module.startswith("membrane.lab.")]
    assert found == []
