"""Command-line flags the way Go programs take them (flag / spf13-pflag): ``--port=80``, ``--port 80``,
``-port 80``, booleans as ``--tcp`` or ``--http=false``. Unknown flags and stray arguments are errors."""

from __future__ import annotations

from typing import Any

_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}


class FlagError(ValueError):
    """Bad command line; ``str(err)`` is what the program prints before exiting with status 2."""


def parse_bool(text: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def parse_flags(argv: list[str], defaults: dict[str, Any]) -> dict[str, Any]:
    """Values for every flag of ``defaults`` (name -> default; its type is the flag's type)."""
    values = dict(defaults)
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--":
            if args:
                raise FlagError(f"unexpected argument {args[0]!r}")
            break
        if not arg.startswith("-") or arg == "-":
            raise FlagError(f"unexpected argument {arg!r}")
        name, eq, raw = arg.lstrip("-").partition("=")
        if name not in defaults:
            raise FlagError(f"unknown flag: --{name}")
        kind = type(defaults[name])
        if kind is bool:
            try:
                values[name] = parse_bool(raw) if eq else True
            except ValueError as exc:
                raise FlagError(f"invalid argument {raw!r} for --{name}: {exc}") from None
            continue
        if not eq:
            if not args:
                raise FlagError(f"flag needs an argument: --{name}")
            raw = args.pop(0)
        if kind is int:
            try:
                values[name] = int(raw, 10)
            except ValueError:
                raise FlagError(f'invalid argument "{raw}" for "--{name}" flag: parse error') from None
        else:
            values[name] = raw
    return values
