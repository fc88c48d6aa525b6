"""The CLI as a whole: one meaning per flag, --json where a table is printed, exit codes and
durations in --help, --version."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer
from typer.testing import CliRunner

from foldflow import __version__
from foldflow.cli.main import app

#: Every command that prints a table (``keys list`` joins when it exists).
LISTING = ("status", "events", "ps", "dlq list", "dlq replay", "stack status", "topics ensure",
           "topics list", "definitions list", "definitions show", "definitions validate",
           "db current", "start", "bench")


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    for name, command in group.commands.items():  # typer vendors click: duck-typed
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


def _all() -> dict[str, Any]:
    return dict(_commands(typer.main.get_command(app)))


def _options(command: Any) -> Iterator[Any]:
    return (p for p in command.params if getattr(p, "param_type_name", "") == "option")


def test_each_short_flag_has_one_meaning_everywhere() -> None:
    meanings: dict[str, set[str]] = {}
    for path, command in _all().items():
        for param in _options(command):
            longs = sorted(o for o in param.opts if o.startswith("--"))
            for short in (o for o in param.opts if not o.startswith("--")):
                meanings.setdefault(short, set()).add(f"{longs[0]} ({path})")
    clashes = {short: where for short, where in meanings.items()
               if len({w.split(" ")[0] for w in where}) > 1}
    assert not clashes, clashes
    assert {w.split(" ")[0] for w in meanings["-t"]} == {"--tenant"}


def test_every_listing_command_takes_json() -> None:
    commands = _all()
    if "keys list" in commands:
        assert any("--json" in p.opts for p in commands["keys list"].params)
    for path in LISTING:
        assert any("--json" in p.opts for p in commands[path].params), path


def test_json_is_a_flag_everywhere() -> None:
    for path, command in _all().items():
        for param in _options(command):
            if "--json" in param.opts:
                assert param.is_flag, path


def test_root_help_documents_exit_codes_and_durations() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for phrase in ("Exit codes: 0 ok", "2 usage or configuration error", "3 timed out",
                   "30s, 15m, 2h", "--json", "docs/cli.md"):
        assert phrase in text, phrase


def test_commands_with_their_own_exit_codes_say_so() -> None:
    for path in ("start", "ps", "stack status", "status", "definitions validate",
                 "db current", "topics ensure", "dlq list", "demo", "bench"):
        result = CliRunner().invoke(app, [*path.split(), "--help"], env={"COLUMNS": "200"})
        assert "Exit codes:" in result.output, path


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"foldflow {__version__}"


def test_durations_parse_on_the_command_line() -> None:
    commands = _all()
    start = commands["start"]
    ctx = start.make_context("start", ["x", "--timeout", "1h30m"])
    assert ctx.params["timeout"] == 5400.0
    ctx = start.make_context("start", ["x", "--timeout", "90"])
    assert ctx.params["timeout"] == 90.0
    result = CliRunner().invoke(app, ["start", "x", "--timeout", "soon"])
    assert result.exit_code == 2
    assert "not a duration" in result.output
    worker = commands["run worker"].make_context("worker", ["--grace-period", "500ms"])
    assert worker.params["grace_period"] == 0.5
