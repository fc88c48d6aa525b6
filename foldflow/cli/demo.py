"""``foldflow demo``: bring everything up, register the examples, run a batch, summarise."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from foldflow import services as svc
from foldflow import stack as local_stack
from foldflow.cli.output import duration_option
from foldflow.cli.services import bring_up, key_path
from foldflow.cli.workflows import command_envelope
from foldflow.demo import EXAMPLES_DIR, plan, read_back, run_batch, summary_table
from foldflow.follow import EventFollower
from foldflow.follow import Progress as WorkflowProgress
from foldflow.schemas.messages import DEFAULT_TENANT, DefinitionRegistered, definition_key
from foldflow.settings import Settings, get_settings
from foldflow.topics import Topology

__all__ = ["demo"]

console = Console()
if not console.is_terminal and "COLUMNS" not in os.environ:
    console.width = 140  # logs (make demo in CI): room for the summary table on one line each


def demo(
    batch: int = typer.Option(20, "--batch", min=1, help="How many workflows to start."),
    timeout: float = duration_option(180.0, "--timeout", help="How long to wait for the batch."),
    examples: Path = typer.Option(EXAMPLES_DIR, "--examples", help="Definitions to register."),
    skip_up: bool = typer.Option(False, "--no-up", help="Assume `foldflow up` already ran."),
) -> None:
    """Run the example workflows end to end and compare their outcomes with the expected ones.

    Exits 1 when any workflow's outcome differs from the expected one.
    """
    from foldflow.definitions import Definition, DefinitionError
    from foldflow.producers import Publisher  # lazy: the CLI is the composition root

    settings = get_settings()
    if not skip_up:
        try:
            bring_up(settings, report=lambda line: console.print(line, highlight=False))
        except (svc.ServiceError, local_stack.StackError) as exc:
            console.print(f"[red]up failed:[/red] {exc}", highlight=False)
            raise typer.Exit(1) from exc

    topology = Topology.of(settings)
    files = sorted(examples.glob("*.yaml")) + sorted(examples.glob("*.json"))
    try:
        definitions = [Definition.load(f) for f in files]
    except DefinitionError as exc:
        console.print(f"[red]an example is invalid:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    cases = plan(batch, run_id=uuid.uuid4().hex[:6], available=[d.name for d in definitions])
    if not cases:
        console.print(f"[red]no known example in {examples}[/red]")
        raise typer.Exit(1)

    with Publisher(settings, source="demo") as publisher, EventFollower(settings) as follower:
        publisher.publish_many([
            (topology.definitions, command_envelope(
                definition_key(DEFAULT_TENANT, d.name, d.version),
                DefinitionRegistered(d.name, d.version, DEFAULT_TENANT, d.canonical_json()),
                tenant=DEFAULT_TENANT))
            for d in definitions
        ])  # fmt: skip
        console.print(f"Registered {len(definitions)} definitions: "
                      f"{', '.join(d.key for d in definitions)}", highlight=False)
        columns = (TextColumn("[bold]workflows"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.description}"), TimeElapsedColumn())
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("starting", total=len(cases))

            def show(progress: dict[str, WorkflowProgress]) -> None:
                done = sum(p.terminal for p in progress.values())
                waiting = sum(p.status == "running" for p in progress.values())
                bar.update(task, completed=done, description=f"{waiting} running")

            progress = run_batch(
                cases, follower=follower, publisher=publisher, commands_topic=topology.commands,
                envelope=command_envelope, timeout=timeout, on_progress=show,
            )  # fmt: skip
    projected = _read_back(settings, [c.workflow_id for c in cases])
    console.print(summary_table(cases, progress, projected))
    wrong = [c for c in cases if progress[c.workflow_id].status != c.expected]
    if wrong:
        console.print(f"[red]{len(wrong)} workflow(s) did not end as expected[/red]")
    disagree = [c for c in cases if projected is not None
                and projected.get(c.workflow_id) != progress[c.workflow_id].status]
    if disagree:
        console.print(f"[red]the gateway serves another status for {len(disagree)} "
                      "workflow(s) than wf.events says[/red]")
    if wrong or disagree:
        raise typer.Exit(1)
    console.print("[green]every workflow ended as expected[/green]"
                  + (" and the gateway serves the same" if projected is not None else ""))
    base = f"http://127.0.0.1:{settings.gateway_port}"
    console.print(f"Console: {base}/ui (log in with the API key in {key_path(settings)}); "
                  f"API docs: {base}/docs; `foldflow down` stops the services.", highlight=False)


def _read_back(settings: Settings, workflow_ids: list[str]) -> dict[str, str] | None:
    """The gateway's view of the batch, or None when there is no local API key to ask with."""
    path = key_path(settings)
    if not path.exists():
        console.print(f"(no API key at {path}: not reading the batch back through the gateway)",
                      highlight=False)
        return None
    with console.status("reading the batch back through the gateway ..."):
        return read_back(f"http://127.0.0.1:{settings.gateway_port}", path.read_text().strip(),
                         workflow_ids)
