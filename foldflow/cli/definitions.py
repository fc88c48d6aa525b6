"""``foldflow definitions register|validate|list|show``: workflow definitions.

``register`` and ``validate`` read files (the language: docs/definitions.md); ``register``
publishes them to ``wf.definitions``. ``list`` and ``show`` read what the projector stored
in PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
import yaml
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from foldflow.cli.output import FAILED, JsonOption, err, print_json
from foldflow.settings import get_settings
from foldflow.topics import Topology

if TYPE_CHECKING:
    from foldflow.definitions import Definition

__all__ = ["FileCheck", "app", "check_files"]

app = typer.Typer(help="Workflow definitions (docs/definitions.md).", no_args_is_help=True)
console = Console()
FilesArgument = typer.Argument(..., help="YAML or JSON definition files.")
TenantOption = typer.Option("default", "--tenant", "-t",
                            help="The tenant the definitions belong to.")


@dataclass(frozen=True)
class FileCheck:
    """One definition file, checked: its definition, or every problem with its path."""

    file: Path
    definition: Definition | None = None
    problems: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (path, message)

    @property
    def valid(self) -> bool:
        """Whether the file holds a valid definition."""
        return self.definition is not None

    def as_json(self) -> dict[str, Any]:
        """The ``--json`` form."""
        d = self.definition
        return {
            "file": str(self.file),
            "valid": self.valid,
            "name": d.name if d else None,
            "version": d.version if d else None,
            "steps": len(d.steps) if d else None,
            "problems": [{"path": p, "message": m} for p, m in self.problems],
        }


def check_files(files: list[Path]) -> list[FileCheck]:
    """Load and validate each file (nothing is published)."""
    from foldflow.definitions import Definition, DefinitionError

    checks = []
    for path in files:
        try:
            checks.append(FileCheck(path, Definition.load(path)))
        except DefinitionError as exc:
            checks.append(FileCheck(path, problems=tuple(
                (problem.path or "<definition>", problem.message) for problem in exc.problems
            )))  # fmt: skip
    return checks


def _print_problems(checks: list[FileCheck]) -> None:
    for check in checks:
        if check.valid:
            continue
        console.print(f"[red]{check.file}: {len(check.problems)} problem(s)[/red]",
                      highlight=False)
        for path, message in check.problems:
            console.print(f"  {path}: {message}", highlight=False, markup=False)


@app.command("validate", epilog="Exit codes: 0 every file is valid; 1 a file is not (each "
                                "problem is printed with its path).")
def validate(files: list[Path] = FilesArgument, as_json: bool = JsonOption) -> None:
    """Check definition files without publishing them: every problem, with its path."""
    checks = check_files(files)
    if as_json:
        print_json([c.as_json() for c in checks])
    else:
        _print_problems(checks)
        for c in checks:
            if c.definition is not None:
                console.print(f"[green]ok[/green] {c.file}: {c.definition.key}, "
                              f"{len(c.definition.steps)} step(s)", highlight=False)
    if not all(c.valid for c in checks):
        raise typer.Exit(FAILED)


@app.command("register", epilog="Exit codes: 0 every file registered; 1 a file is invalid "
                                "(nothing is published) or Kafka did not ack.")
def register(files: list[Path] = FilesArgument, tenant: str = TenantOption) -> None:
    """Validate every file, then publish each as `definition.registered.v1`.

    Nothing is published if any file is invalid; every problem is printed with its path.
    """
    from foldflow.cli.workflows import command_envelope, publish
    from foldflow.schemas.messages import DefinitionRegistered, definition_key

    checks = check_files(files)
    if not all(c.valid for c in checks):
        _print_problems(checks)
        raise typer.Exit(FAILED)
    settings = get_settings()
    topic = Topology.of(settings).definitions
    for check in checks:
        definition = check.definition
        assert definition is not None
        payload = DefinitionRegistered(definition.name, definition.version, tenant,
                                       definition.canonical_json())
        key = definition_key(tenant, definition.name, definition.version)
        publish(settings, topic, command_envelope(key, payload, tenant=tenant))
        console.print(f"registered {definition.key} (tenant {tenant})", highlight=False)


def _engine() -> Any:
    from foldflow.projections.db import make_engine

    return make_engine(get_settings(), pool_size=1)


@app.command("list", epilog="Exit codes: 0 listed (also when there are none); 1 PostgreSQL "
                            "failed.")
def list_(
    tenant: str = TenantOption,
    name: str | None = typer.Option(None, "--name", "-n", help="Only this definition."),
    as_json: bool = JsonOption,
) -> None:
    """The registered definitions of a tenant, every version, as the projector stored them."""
    from foldflow.projections.queries import list_definitions

    views = list_definitions(_engine(), tenant, name=name)
    if as_json:
        print_json([{"tenant": v.tenant, "name": v.name, "version": v.version,
                     "steps": len(v.definition.get("steps", [])),
                     "registered_at": v.registered_at} for v in views])
        return
    table = Table(title=f"definitions of tenant {tenant}")
    for column in ("name", "version", "steps", "registered (UTC)"):
        table.add_column(column)
    for v in views:
        table.add_row(v.name, str(v.version), str(len(v.definition.get("steps", []))),
                      v.registered_at.strftime("%Y-%m-%d %H:%M:%S"))
    console.print(table)


@app.command("show", epilog="Exit codes: 0 shown; 1 no such definition (or PostgreSQL "
                            "failed).")
def show(
    name: str = typer.Argument(..., help="The definition's name."),
    version: int | None = typer.Option(None, "--version", min=1,
                                       help="This version (default: the latest)."),
    tenant: str = TenantOption,
    as_json: bool = JsonOption,
) -> None:
    """One registered definition in full (YAML; --json for JSON), defaults spelled out."""
    from foldflow.projections.queries import get_definition

    view = get_definition(_engine(), tenant, name, version)
    if view is None:
        which = name + (f" version {version}" if version else "")
        err.print(f"[red]no definition {which} for tenant {tenant}[/red]", highlight=False)
        raise typer.Exit(FAILED)
    if as_json:
        print_json({"tenant": view.tenant, "name": view.name, "version": view.version,
                    "registered_at": view.registered_at, "definition": view.definition})
        return
    err.print(f"# {view.name} version {view.version} (tenant {view.tenant}), registered "
              f"{view.registered_at:%Y-%m-%d %H:%M:%S} UTC", highlight=False)
    text = yaml.safe_dump(view.definition, sort_keys=False, allow_unicode=True)
    console.print(Syntax(text, "yaml", background_color="default") if console.is_terminal
                  else text.rstrip("\n"), highlight=False, markup=False)
