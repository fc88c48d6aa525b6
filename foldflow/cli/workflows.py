"""Commands that talk to Kafka directly, no gateway needed.

``foldflow start NAME --input JSON [--wait]``, ``foldflow signal|cancel|pause|resume|terminate
ID`` (and ``foldflow definitions register``, :mod:`foldflow.cli.definitions`). Each publishes
one message and returns once the broker acked it (``producers.Publisher``). An ``ID`` is the
``--tenant``'s own workflow id (or a workflow key, :mod:`foldflow.cli.ids`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from foldflow import jsonsafe
from foldflow.cli.ids import workflow_target
from foldflow.cli.output import (
    FAILED,
    TIMED_OUT,
    USAGE,
    JsonOption,
    duration_option,
    err,
    print_json,
)
from foldflow.follow import EventFollower, Progress, track
from foldflow.schemas.messages import (
    DEFAULT_TENANT,
    CancelWorkflow,
    Envelope,
    PauseWorkflow,
    Payload,
    ResumeWorkflow,
    SignalWorkflow,
    StartWorkflow,
    TerminateWorkflow,
    dump_json,
)
from foldflow.settings import Settings, get_settings
from foldflow.topics import Topology

__all__ = ["command_envelope", "parse_json", "publish", "register", "wait_for"]

console = Console()
SOURCE = "cli"
TenantOption = typer.Option(
    None, "--tenant", "-t",
    help="The tenant the workflow belongs to (default: the default tenant).",
)
ReasonOption = typer.Option(None, "--reason", help="Why (kept in the workflow's history).")


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
    """JSON from the command line (``@path`` reads a file); exits 2 when it is not JSON.

    The same bounds as the gateway's (docs/limits.md): a value no downstream could store
    (NaN, ``\\u0000``, a lone surrogate, deep nesting...) or over the size limit is
    refused with every offending path.
    """
    try:
        raw = Path(text[1:]).read_text() if text.startswith("@") else text
        value = jsonsafe.loads(raw)
    except jsonsafe.UnsafeJson as exc:
        problems = exc.problems
    except (OSError, ValueError) as exc:
        err.print(f"[red]{what} is not valid JSON:[/red] {exc}", highlight=False)
        raise typer.Exit(USAGE) from exc
    else:
        too_big = jsonsafe.size_problem(value, path="", what=what)
        if too_big is None:
            return value
        problems = [too_big]
    err.print(f"[red]{what} cannot be sent:[/red]", highlight=False)
    for problem in problems:
        where = what + (problem.path if problem.path.startswith("[") else f".{problem.path}")
        err.print(f"  {where if problem.path else what}: {problem.message}",
                  highlight=False, markup=False)
    raise typer.Exit(USAGE)


def publish(settings: Settings, topic: str, envelope: Envelope) -> None:
    """Publish one message and wait for the broker's ack; exits 1 when it does not ack."""
    from foldflow.producers import Publisher, PublishError  # lazy: the CLI is the composition root

    try:
        with Publisher(settings, source=SOURCE) as publisher:
            publisher.publish(topic, envelope)
    except PublishError as exc:
        err.print(f"[red]not acked by Kafka at {settings.kafka_bootstrap}:[/red] {exc}",
                  highlight=False)
        raise typer.Exit(FAILED) from exc


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
    timeout: float = duration_option(60.0, "--timeout", help="How long --wait waits at most."),
    as_json: bool = JsonOption,
) -> None:
    """Start a workflow; with --wait, print its final status and output."""
    data = parse_json(input_json, what="--input")
    settings = get_settings()
    tenant, wid, key = workflow_target(workflow_id or str(uuid.uuid4()), tenant)
    payload = StartWorkflow(name, version, dump_json(data), tenant)
    envelope = command_envelope(key, payload, tenant=tenant)
    whose = "" if tenant == DEFAULT_TENANT else f", tenant {tenant}"
    if not wait:
        publish(settings, Topology.of(settings).commands, envelope)
        if as_json:
            print_json({"id": wid, "definition": name, "version": version, "tenant": tenant,
                        "command_id": envelope.event_id})
        else:
            console.print(f"started {wid} ({name}{whose})", highlight=False)
        return
    with EventFollower(settings) as follower:
        follower.watch([key])  # before publishing: the log end *now* is where we read from
        publish(settings, Topology.of(settings).commands, envelope)
        err.print(f"started {wid} ({name}{whose}), waiting up to {timeout:g}s ...",
                  highlight=False)
        with err.status(f"{wid}: waiting for workflow.started") as spinner:

            def show(event: Envelope, progress: Progress) -> None:
                spinner.update(f"{wid}: {progress.status}, last event {event.event_type}")

            progress = wait_for(follower, key, timeout=timeout, on_event=show)
    if as_json:
        print_json({**progress_json(progress), "id": wid})
    else:
        console.print(progress_table(progress, shown_id=wid))
    if not progress.terminal:
        err.print(f"[yellow]{wid} did not end within {timeout:g}s[/yellow]")
        raise typer.Exit(TIMED_OUT)
    if progress.status != "completed":
        raise typer.Exit(FAILED)


def progress_json(progress: Progress) -> dict[str, Any]:
    """One workflow's outcome for ``--json``."""
    return {
        "id": progress.workflow_id,
        "definition": progress.definition,
        "status": progress.status,
        "terminal": progress.terminal,
        "duration_s": progress.duration_s,
        "steps_completed": sorted(progress.steps_completed),
        "attempts": progress.attempts,
        "failed_attempts": progress.failed_attempts,
        "events": progress.events,
        "output": progress.output,
        "error": progress.error,
    }


def _send(workflow_id: str, payload: Payload, tenant: str | None, verb: str) -> None:
    settings = get_settings()
    tenant, own, key = workflow_target(workflow_id, tenant)
    envelope = command_envelope(key, payload, tenant=tenant)
    publish(settings, Topology.of(settings).commands, envelope)
    console.print(f"{verb} {own} (command {envelope.event_id})", highlight=False)


START_EXITS = ("Exit codes: 0 published (with --wait: the workflow completed); 1 Kafka did "
               "not ack (with --wait: it ended otherwise: failed, compensated, cancelled …); "
               "2 bad --input; 3 --wait: still running after --timeout.")
SENT = "Exit codes: 0 the command was acked by Kafka; 1 it was not; 2 bad arguments."


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
    """Cancel a workflow: compensate its completed steps, then end `cancelled`."""
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
    app.command("start", epilog=START_EXITS)(start)
    for command in (signal, cancel, pause, resume, terminate):
        app.command(command.__name__, epilog=SENT)(command)
