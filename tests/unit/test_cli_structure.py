"""The CLI's shape: each command module registers its sub-parser with the handler that runs it, no CLI
module imports a private (``_name``) name from another, CLI modules import each other without a circle,
and only the lab commands import the lab."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

from membrane.cli import (
    apply_cmds,
    bpf_cmds,
    client_cmds,
    cluster_status,
    dbg_config,
    exec_cmds,
    get_cmds,
    identity_cmds,
    lab_cmds,
    label_cmds,
    metrics_cmds,
    node_cmds,
    observe,
    policy_cmds,
    workload_cmds,
)
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
    (["apply", "-f", "x.yaml"], apply_cmds.cmd_apply),
    (["delete", "pod", "x"], apply_cmds.cmd_delete),
    (["get", "pods"], get_cmds.cmd_get),
    (["label", "pod", "x", "a=b"], label_cmds.cmd_label),
    (["exec", "x", "--", "true"], exec_cmds.cmd_exec),
    (["status"], node_cmds.run_status),
    (["dbg", "status", "--node", "n"], node_cmds.run),
    (["endpoint", "list"], node_cmds.run),
    (["service", "list"], node_cmds.run),
    (["identity", "list"], identity_cmds.run),
    (["lab", "list"], lab_cmds.run),
    (["version"], client_cmds.run_version),
    (["completion", "bash"], client_cmds.run_completion),
])
def test_a_command_carries_the_handler_its_module_registered(argv: list[str], handler: object) -> None:
    assert build_parser().parse_args(argv).handler is handler


def _handlers(parser: argparse.ArgumentParser, path: str, inherited: object = None) -> dict[str, object]:
    """Every leaf command -> the handler it runs (its own ``set_defaults``, else its parent command's)."""
    handler = parser._defaults.get("handler", inherited)
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {path: handler}
    return {leaf: h for name, p in subs[0].choices.items() for leaf, h in _handlers(p, f"{path} {name}", handler).items()}


def test_every_command_has_a_handler() -> None:
    """Main runs ``args.handler``: a command whose module forgot ``set_defaults(handler=...)`` fails here,
    not with an AttributeError in front of a user."""
    handlers = _handlers(build_parser(), "membrane")
    assert len(handlers) > 50
    assert [path for path, handler in handlers.items() if not callable(handler)] == []


def test_the_status_handler_picks_the_cluster_page_without_a_node(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(cluster_status, "run", lambda args: calls.append("cluster") or 0)
    monkeypatch.setattr(node_cmds, "run", lambda args: calls.append(f"node {args.node}") or 0)
    parser = build_parser()
    for argv in (["status"], ["status", "--node", "k8s-w1"]):
        args = parser.parse_args(argv)
        assert args.handler(args) == 0
    assert calls == ["cluster", "node k8s-w1"]


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


def _cli_imports(path: Path) -> set[str]:
    """The CLI modules ``path`` imports, at the top or inside functions."""
    found = set()
    for node in _imports(path):
        if node.module == "membrane.cli":
            found |= {alias.name for alias in node.names}
        elif node.module.startswith("membrane.cli."):
            found.add(node.module.split(".")[2])
    return found


def test_cli_modules_import_each_other_without_a_circle() -> None:
    graph = {p.stem: _cli_imports(p) for p in CLI.glob("*.py")}
    circles = []

    def visit(start: str, module: str, path: list[str]) -> None:
        for dep in sorted(graph.get(module, ())):
            if dep == start:
                circles.append(" -> ".join([*path, dep]))
            elif dep not in path and dep > start:  # each circle once, from its smallest module
                visit(start, dep, [*path, dep])

    for module in sorted(graph):
        visit(module, module, [module])
    assert circles == []
