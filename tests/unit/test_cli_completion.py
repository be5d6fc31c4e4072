"""``membrane completion bash|zsh|fish`` (argcomplete): the script, and the completions it asks for."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _complete(line: str, tmp_path: object) -> list[str]:
    out = f"{tmp_path}/completions"
    env = dict(os.environ, COMP_LINE=line, COMP_POINT=str(len(line)), _ARGCOMPLETE="1",
               _ARGCOMPLETE_STDOUT_FILENAME=out)
    subprocess.run([sys.executable, "-m", "membrane.cli.main"], env=env, check=True, timeout=60,
                   capture_output=True)
    with open(out) as fh:
        return [w.strip() for w in fh.read().split("\v")]


def test_commands_and_subcommands_complete(tmp_path: object) -> None:
    assert _complete("membrane desc", tmp_path) == ["describe"]
    assert _complete("membrane connectivity t", tmp_path) == ["test"]
    assert "--junit-file" in _complete("membrane connectivity test --j", tmp_path)
    assert _complete("membrane completion z", tmp_path) == ["zsh"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    from membrane.cli.main import main

    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert "membrane" in script and "_ARGCOMPLETE" in script
