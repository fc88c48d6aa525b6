"""Commands that talk to Kafka directly, no gateway needed (DESIGN §12).

``foldflow definitions register FILE...``, ``foldflow start NAME --input JSON [--wait]``,
``foldflow signal|cancel|pause|resume|terminate ID``. Each publishes one message and
returns once the broker acked it (``producers.Publisher``). An ``ID`` is the ``--tenant``'s
own workflow id (or a workflow key, :mod:`foldflow.cli.ids`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from foldflow.cli.ids import workflow_target
from foldflow.follow import EventFollower, Progress, track
from foldflow.settings import Settings, get_settings
from foldflow.topics import Topology
from schemas.messages import (
    DEFAULT_TENANT,
    CancelWorkflow,
    DefinitionRegistered,
    Envelope,
    PauseWorkflow,
    Payload,
    ResumeWorkflow,
    SignalWorkflow,
    StartWorkflow,
    TerminateWorkflow,
    definition_key,
    dump_json,
)

__all__ = ["command_envelope", "parse_json", "register", "wait_for"]

console = Console()
SOURCE = "cli"
TenantOption = typer.Option(
    None, "--tenant", help="The tenant the workflow belongs to (default: the default tenant)."
)
ReasonOption = typer.Option(None, "--reason", help="Why (kept in the workflow's history).")

definitions_app = typer.Typer(help="Workflow definitions on wf.definitions.",
                              no_args_is_help=True)


def command_envelope(workflow_id: str, payload: Payload, *, tenant: str) -> Envelope:
    """A fresh envelope for a command (or definition) the CLI publishes."""
    return Envelope(
        event_id=str(uuid.uuid4()),
        timestamp=int(time.time() * 1000),
        source=SOURCE,
        correlation_id=str(uuid.uuid4()),
        workflow_id=workflow_id,
        payload=payload,
        tenant=tenant,
    )


def parse_json(text: str, *, what: str) -> Any:
    """JSON from the command line (``@path`` reads a file); exits 2 when it is not JSON."""
    try:
        raw = Path(text[1:]).read_text() if text.startswith("@") else text
        return json.loads(raw)
    except (OSError, ValueError) as exc:
        console.print(f"[red]{what} is not valid JSON:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from exc


def _publish(settings: Settings, topic: str, envelope: Envelope) -> None:
    from producers import Publisher, PublishError  # lazy: the CLI is the composition root

    try:
        with Publisher(settings, source=SOURCE) as publisher:
            publisher.publish(topic, envelope)
    except PublishError as exc:
        console.print(f"[red]not acked by Kafka at {settings.kafka_bootstrap}:[/red] {exc}",
                      highlight=False)
        raise typer.Exit(1) from exc


@definitions_app.command("register")
def register_definitions(
    files: list[Path] = typer.Argument(..., help="YAML or JSON definition files."),
    tenant: str = typer.Option(
        DEFAULT_TENANT, "--tenant", help="The tenant the definitions belong to."
    ),
) -> None:
    """Validate every file, then publish each as ``definition.registered.v1``.

    Nothing is published if any file is invalid; every problem is printed with its path.
    """
    from foldflow.definitions import Definition, DefinitionError

    loaded = []
    failed = False
    for path in files:
        try:
            loaded.append(Definition.load(path))
        except DefinitionError as exc:
            failed = True
            console.print(f"[red]{path}: {len(exc.problems)} problem(s)[/red]", highlight=False)
            for problem in exc.problems:
                console.print(f"  {problem.path or '<definition>'}: {problem.message}",
                              highlight=False, markup=False)
    if failed:
        raise typer.Exit(1)
    settings = get_settings()
    topic = Topology.of(settings).definitions
    for definition in loaded:
        payload = DefinitionRegistered(definition.name, definition.version, tenant,
                                       definition.canonical_json())
        key = definition_key(tenant, definition.name, definition.version)
        _publish(settings, topic, command_envelope(key, payload, tenant=tenant))
        console.print(f"registered {definition.key} (tenant {tenant})", highlight=False)


def wait_for(follower: EventFollower, workflow_id: str, *, timeout: float,
             on_event: Callable[[Envelope, Progress], None] = lambda _e, _p: None) -> Progress:
    """Fold the workflow's events until it is terminal or ``timeout`` seconds passed."""
    progress = Progress(workflow_id)
    deadline = time.monotonic() + timeout
    while not progress.terminal and time.monotonic() < deadline:
        for event in follower.poll(timeout=min(1.0, max(0.0, deadline - time.monotonic()))):
            if event.workflow_id == workflow_id:
                progress = track(progress, event)
                on_event(event, progress)
    return progress


def progress_table(progress: Progress, *, shown_id: str | None = None) -> Table:
    """One workflow's outcome as a two-column table (``shown_id``: its tenant's own id)."""
    table = Table(show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    duration = progress.duration_s
    rows = [
        ("workflow", shown_id or progress.workflow_id),
        ("definition", progress.definition or "-"),
        ("status", progress.status),
        ("duration", f"{duration:.2f}s" if duration is not None else "-"),
        ("steps completed", str(len(progress.steps_completed))),
        ("attempts", f"{progress.attempts} ({progress.failed_attempts} failed)"),
        ("output", dump_json(progress.output) if progress.status == "completed" else "-"),
        ("error", progress.error or "-"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def start(
    name: str = typer.Argument(..., help="Definition name."),
    input_json: str = typer.Option("{}", "--input", help="Workflow input as JSON (or @file)."),
    version: int | None = typer.Option(None, "--version", help="Definition version (latest)."),
    workflow_id: str | None = typer.Option(None, "--id", help="Workflow id (default: random)."),
    tenant: str | None = TenantOption,
    wait: bool = typer.Option(False, "--wait", help="Follow wf.events until it ends."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds --wait waits at most."),
) -> None:
    """Start a workflow; with --wait, print its final status and output.

    With --wait the exit code is 0 only when the workflow completed (1: it ended otherwise,
    3: still running after --timeout).
    """
    data = parse_json(input_json, what="--input")
    settings = get_settings()
    tenant, wid, key = workflow_target(workflow_id or str(uuid.uuid4()), tenant)
    payload = StartWorkflow(name, version, dump_json(data), tenant)
    envelope = command_envelope(key, payload, tenant=tenant)
    whose = "" if tenant == DEFAULT_TENANT else f", tenant {tenant}"
    if not wait:
        _publish(settings, Topology.of(settings).commands, envelope)
        console.print(f"started {wid} ({name}{whose})", highlight=False)
        return
    with EventFollower(settings) as follower:
        follower.watch([key])  # before publishing: the log end *now* is where we read from
        _publish(settings, Topology.of(settings).commands, envelope)
        console.print(f"started {wid} ({name}{whose}), waiting up to {timeout:.0f}s ...",
                      highlight=False)
        with console.status(f"{wid}: waiting for workflow.started") as spinner:

            def show(event: Envelope, progress: Progress) -> None:
                spinner.update(f"{wid}: {progress.status}, last event {event.event_type}")

            progress = wait_for(follower, key, timeout=timeout, on_event=show)
    console.print(progress_table(progress, shown_id=wid))
    if not progress.terminal:
        console.print(f"[yellow]{wid} did not end within {timeout:.0f}s[/yellow]")
        raise typer.Exit(3)
    if progress.status != "completed":
        raise typer.Exit(1)


def _send(workflow_id: str, payload: Payload, tenant: str | None, verb: str) -> None:
    settings = get_settings()
    tenant, own, key = workflow_target(workflow_id, tenant)
    envelope = command_envelope(key, payload, tenant=tenant)
    _publish(settings, Topology.of(settings).commands, envelope)
    console.print(f"{verb} {own} (command {envelope.event_id})", highlight=False)


def signal(
    workflow_id: str = typer.Argument(..., help="Workflow id."),
    name: str = typer.Argument(..., help="Signal name (a signal step waits for it)."),
    data: str = typer.Option("null", "--data", help="Signal data as JSON (or @file)."),
    tenant: str | None = TenantOption,
) -> None:
    """Deliver a named signal with data to a workflow."""
    payload = SignalWorkflow(name, dump_json(parse_json(data, what="--data")))
    _send(workflow_id, payload, tenant, f"signal {name!r} sent to")


def cancel(workflow_id: str = typer.Argument(...), reason: str | None = ReasonOption,
           tenant: str | None = TenantOption) -> None:
    """Cancel a workflow: compensate its completed steps, then end ``cancelled``."""
    _send(workflow_id, CancelWorkflow(reason), tenant, "cancel sent to")


def pause(workflow_id: str = typer.Argument(...), reason: str | None = ReasonOption,
          tenant: str | None = TenantOption) -> None:
    """Pause a workflow: no new tasks are dispatched until it is resumed."""
    _send(workflow_id, PauseWorkflow(reason), tenant, "pause sent to")


def resume(workflow_id: str = typer.Argument(...), reason: str | None = ReasonOption,
           tenant: str | None = TenantOption) -> None:
    """Resume a paused workflow."""
    _send(workflow_id, ResumeWorkflow(reason), tenant, "resume sent to")


def terminate(workflow_id: str = typer.Argument(...), reason: str | None = ReasonOption,
              tenant: str | None = TenantOption) -> None:
    """Terminate a workflow at once, without compensation."""
    _send(workflow_id, TerminateWorkflow(reason), tenant, "terminate sent to")


def register(app: typer.Typer) -> None:
    """Add these commands to the root ``foldflow`` app."""
    app.add_typer(definitions_app, name="definitions")
    for command in (start, signal, cancel, pause, resume, terminate):
        app.command(command.__name__)(command)
