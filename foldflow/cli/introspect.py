"""Resolving ``foldflow`` argument lists against the Typer app, without running them.

``foldflow up`` uses it to fail clearly when a service's command does not exist, and the
deployment tests use it to check that every container runs a real command.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

__all__ = ["resolve"]


def resolve(argv: Sequence[str]) -> Any | None:
    """The (sub)command ``foldflow <argv>`` would run, or None when it does not exist.

    Options and arguments after the command path are checked by the command's own parser,
    so an unknown option or a missing argument also gives None.
    """
    from foldflow.cli.main import app  # lazy: main imports every CLI module

    command: Any = typer.main.get_command(app)
    ctx: Any = command.make_context("foldflow", ["--help"], resilient_parsing=True)
    args = list(argv)
    while isinstance(command, TyperGroup):
        if not args or args[0].startswith("-"):
            return None
        sub = command.get_command(ctx, args[0])
        if sub is None:
            return None
        command, args = sub, args[1:]
        ctx = type(ctx)(command, info_name=argv[0], parent=ctx)
    try:
        command.parse_args(ctx, args)
    except Exception:  # the vendored click's UsageError/BadParameter and friends
        return None
    return command
