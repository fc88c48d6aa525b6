"""What the CLI prints: tables for people, ``--json`` for scripts, one exit-code scheme.

Every command that prints a table takes :data:`JsonOption`; with ``--json`` it prints one
JSON document on stdout (:func:`print_json`) and nothing else there: progress and errors go
to stderr (:data:`err`). Lists are JSON arrays, single things objects; times are ISO 8601
strings, durations seconds. ``docs/cli.md`` lists the shapes.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from pathlib import PurePath
from typing import Any

import typer
from rich.console import Console

__all__ = [
    "EXIT_CODES",
    "FAILED",
    "INTERRUPTED",
    "OK",
    "TIMED_OUT",
    "USAGE",
    "JsonOption",
    "duration_option",
    "err",
    "jsonable",
    "parse_duration_option",
    "print_json",
]

#: Exit codes, the same for every command.
OK = 0
FAILED = 1  # the outcome is not the one asked for, or Kafka/PostgreSQL refused or is down
USAGE = 2  # bad arguments, bad input (JSON, files), a configuration that is refused
TIMED_OUT = 3  # waited, and what was waited for did not happen in time
INTERRUPTED = 130  # Ctrl-C

#: The exit codes as ``--help`` shows them (the root command's epilog).
EXIT_CODES = (
    "Exit codes: 0 ok; 1 the outcome is not the one asked for (a workflow did not complete, "
    "a service is not ready, a definition is invalid, a check failed) or Kafka/PostgreSQL "
    "failed; 2 usage or configuration error (a bad option or JSON argument); 3 timed out; "
    "130 interrupted. Durations are 500ms, 30s, 15m, 2h, 1d, 1h30m or seconds. "
    "Listing commands take --json. More in docs/cli.md."
)

#: Messages, progress and errors; stdout stays clean for ``--json``.
err = Console(stderr=True)

#: ``--json``: print one JSON document on stdout instead of the table.
JsonOption: Any = typer.Option(
    False, "--json", help="Print one JSON document on stdout instead of the table "
    "(messages go to stderr).",
)


def jsonable(value: Any) -> Any:
    """``value`` with dataclasses, mappings, times, paths and enums made JSON-ready."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [jsonable(v) for v in items]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


def print_json(value: Any) -> None:
    """Print ``value`` (see :func:`jsonable`) as one indented JSON document on stdout."""
    sys.stdout.write(json.dumps(jsonable(value), indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def parse_duration_option(value: Any) -> float:
    """A CLI duration (``30s``, ``15m``, ``2h``, ``1h30m`` or seconds) in seconds."""
    from foldflow.durations import parse_seconds

    try:
        return parse_seconds(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def duration_option(default: float | None, *names: str, help: str) -> Any:
    """A ``--name DURATION`` option in the one duration syntax, given to the command in seconds."""
    return typer.Option(default, *names, help=help, metavar="DURATION",
                        parser=parse_duration_option)
