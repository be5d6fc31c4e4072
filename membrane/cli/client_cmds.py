"""``membrane version`` and ``membrane completion bash|zsh|fish``: about the command line itself."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_parsers(sub: Any, lab_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("completion", help="shell completion script: source <(membrane completion bash)")
    lab_arg(p)
    p.set_defaults(handler=run_completion)  # main dispatches to the handler its sub-parser set
    p.add_argument("shell", choices=("bash", "zsh", "fish"))

    p = sub.add_parser("version", help="print the version")
    lab_arg(p)
    p.set_defaults(handler=run_version)  # main dispatches to the handler its sub-parser set


def run_version(args: argparse.Namespace) -> int:
    print("membrane 0.1.0")
    return 0


def run_completion(args: argparse.Namespace) -> int:
    """argcomplete's script, which calls membrane back with _ARGCOMPLETE set."""
    import argcomplete

    print(argcomplete.shellcode(["membrane"], shell=args.shell), end="")
    return 0
