"""Every ``$ membrane …`` line of the README parses with the real argument parser (no lab needed)."""

from __future__ import annotations

import pytest

from membrane.cli.main import build_parser
from tests.readme_commands import readme_commands


def test_readme_has_the_demo_commands() -> None:
    commands = [" ".join(c) for c in readme_commands()]
    assert "lab create" in commands
    assert "apply -f examples/demo.yaml" in commands
    assert "exec curl-pod -- nslookup webpod" in commands
    assert not any("<" in c or "|" in c for c in commands), "placeholders or pipes do not run as written"


@pytest.mark.parametrize("argv", readme_commands(), ids=" ".join)
def test_readme_command_parses(argv: list[str]) -> None:
    build_parser().parse_args(["--lab", "readme", *argv])  # argparse exits (SystemExit) on a bad command
