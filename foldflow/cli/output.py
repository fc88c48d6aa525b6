"""Machine-readable output for listing commands: ``--json`` prints JSON on stdout.

A command that prints a table takes :data:`JsonOption` and, when it is set, passes its
rows to :func:`print_json` instead: one JSON array of objects (datetimes in ISO 8601),
nothing else on stdout, so scripts can pipe it to ``jq``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import typer

__all__ = ["JsonOption", "print_json", "to_json"]

JsonOption = typer.Option(False, "--json", help="Print a JSON array instead of a table.")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, frozenset | set):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(rows: Iterable[Any]) -> str:
    """Rows (dataclasses or mappings) as a JSON array."""
    items = [
        dataclasses.asdict(r) if dataclasses.is_dataclass(r) and not isinstance(r, type)
        else dict(r)
        for r in rows
    ]  # fmt: skip
    return json.dumps(items, default=_plain, indent=2, ensure_ascii=False)


def print_json(rows: Iterable[Any]) -> None:
    """Print rows as a JSON array on stdout."""
    print(to_json(rows))
