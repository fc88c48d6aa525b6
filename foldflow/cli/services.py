"""``foldflow up|down|ps|scale``: the whole system in the background on this machine.

``up`` is idempotent: the local stack (Kafka, PostgreSQL), the topics (with the built-in
task types), the database migrations (``foldflow db upgrade``), every instance of
:func:`foldflow.services.services` (a running one is left alone; ``--workers 3`` and the
like set how many), and a local API key in ``<state_dir>/api-key`` (kept while the gateway
accepts it). ``scale worker=3`` starts or stops instances of a running deployment.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from foldflow import services as svc
from foldflow import stack as local_stack
from foldflow.admin import ensure_topics
from foldflow.cli.introspect import resolve
from foldflow.cli.output import JsonOption, print_json
from foldflow.settings import MAX_INSTANCES, Settings, get_settings
from foldflow.topics import BUILTIN_TASK_TYPES

__all__ = ["bring_up", "register"]

console = Console()

LOCAL_TENANT = "default"


def _say(line: str) -> None:
    console.print(line, highlight=False)


def _run_cli(settings: Settings, *argv: str, timeout: float = 300.0) -> None:
    """Run a one-shot ``foldflow`` command with these settings; raise with its output."""
    if resolve(argv) is None:
        raise svc.ServiceError(f"`foldflow {' '.join(argv)}` does not exist (yet)")
    proc = subprocess.run(
        [sys.executable, "-m", svc.CLI_MODULE, *argv],
        env={**os.environ, **svc.settings_env(settings)},
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise svc.ServiceError(
            f"`foldflow {' '.join(argv)}` failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )


def key_path(settings: Settings) -> Path:
    """``<state_dir>/api-key``."""
    return settings.state_dir.expanduser().resolve() / "api-key"


def ensure_api_key(settings: Settings, *, report: svc.Report) -> None:
    """Keep ``<state_dir>/api-key`` if it is a stored key of tenant "default" with every
    scope; otherwise create one (``foldflow.gateway.keys.create_api_key``) and write it there
    (0600).
    """
    from foldflow.gateway.keys import (  # lazy: composition root
        SCOPES,
        create_api_key,
        find_key,
        hash_key,
    )
    from foldflow.projections.db import make_engine

    path = key_path(settings)
    existing = path.read_text().strip() if path.exists() else ""
    engine = make_engine(settings, pool_size=1)
    try:
        stored = find_key(engine, hash_key(existing)) if existing else None
        if stored and stored.tenant == LOCAL_TENANT and stored.scopes >= set(SCOPES):
            report(f"API key: kept {path}")
            return
        key = create_api_key(engine, LOCAL_TENANT, SCOPES, f"foldflow up {secrets.token_hex(4)}")
    finally:
        engine.dispose()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(f"{key}\n")
    tmp.replace(path)
    report(f"API key: created {path} (tenant {LOCAL_TENANT!r}, all scopes)")


def bring_up(settings: Settings, *, report: svc.Report = _say) -> None:
    """Everything ``foldflow up`` does, in order; raises ``ServiceError``/``StackError``."""
    with svc.exclusive(settings):
        _bring_up(settings, report=report)


def _bring_up(settings: Settings, *, report: svc.Report) -> None:
    specs = svc.services(settings)
    missing = [f"`foldflow {' '.join(s.argv)}`" for s in specs if resolve(s.argv) is None]
    if missing:
        raise svc.ServiceError("not available (yet): " + ", ".join(missing))

    local_stack.up(settings, report=report)
    outcomes = ensure_topics(settings, task_types=BUILTIN_TASK_TYPES)
    created = sum(o.outcome == "created" for o in outcomes)
    report(f"Topics: {len(outcomes)} ensured ({created} created)")
    _run_cli(settings, "db", "upgrade")
    report("Database: migrations applied")
    ensure_api_key(settings, report=report)

    started: list[tuple[svc.ServiceSpec, int]] = []
    for spec in specs:
        pid, fresh = svc.start(settings, spec)
        report(f"{spec.name}: {'started' if fresh else 'already running'} (pid {pid})")
        started.append((spec, pid))
    for spec, pid in started:
        svc.wait_ready(settings, spec, pid)
        report(f"{spec.name}: ready at {spec.ready_url}")
    for spec in svc.known(settings):
        if spec not in specs and svc.running_pid(settings, spec) is not None:
            report(f"{spec.name}: left running (beyond the {svc.count_of(settings, spec.kind)} "
                   f"asked for; `foldflow scale {spec.kind}={svc.count_of(settings, spec.kind)}`"
                   " stops it)")  # fmt: skip


def _count_option(kind: str) -> int | None:
    return typer.Option(
        None,
        f"--{kind}s",
        min=1,
        max=MAX_INSTANCES,
        help=f"Instances of the {kind} (default FOLDFLOW_{kind.upper()}S, 1).",
    )


def up(
    orchestrators: int | None = _count_option("orchestrator"),
    workers: int | None = _count_option("worker"),
    projectors: int | None = _count_option("projector"),
    gateways: int | None = _count_option("gateway"),
) -> None:
    """Bring Kafka, PostgreSQL, topics, migrations and every service up (idempotent).

    Each service runs as many instances as asked (one by default); instance k serves on
    its port + 10(k-1), a gateway on FOLDFLOW_GATEWAY_PORT + k-1 (docs/operations.md).
    """
    counts = {"orchestrators": orchestrators, "workers": workers, "projectors": projectors,
              "gateways": gateways}  # fmt: skip
    settings = get_settings().model_copy(
        update={name: n for name, n in counts.items() if n is not None}
    )
    try:
        bring_up(settings)
    except (svc.ServiceError, local_stack.StackError) as exc:
        console.print(f"[red]up failed:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    console.print(ps_table(svc.status(settings, svc.known(settings))))
    console.print(f"[green]Foldflow is up.[/green] Gateway: http://127.0.0.1:{settings.gateway_port}"
                  f"  API key: {key_path(settings)}", highlight=False)


def down(
    stack: bool = typer.Option(
        False, "--stack", help="Also stop Kafka/PostgreSQL if `foldflow stack up` started them."
    ),
) -> None:
    """Stop the services `foldflow up` started (SIGTERM, then SIGKILL after a grace period)."""
    settings = get_settings()
    with svc.exclusive(settings):
        svc.stop(settings, tuple(reversed(svc.known(settings))), report=_say)
    if stack:
        local_stack.down(settings, report=_say)


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def ps_table(rows: list[svc.ServiceStatus]) -> Table:
    """The ``foldflow ps`` table."""
    table = Table(title="Foldflow services")
    for column in ("service", "pid", "state", "uptime", "port"):
        table.add_column(column)
    table.add_column("log", overflow="fold")
    colours = {"ready": "green", "starting": "yellow", "stopped": "dim", "exited": "red"}
    for r in rows:
        table.add_row(r.name, str(r.pid) if r.pid else "-", f"[{colours[r.state]}]{r.state}[/]",
                      _uptime(r.uptime_s), str(r.port), _short(r.log))
    return table


def ps(as_json: bool = JsonOption) -> None:
    """Show each background service instance: pid, state, uptime, port and log file.

    Exits 1 unless every instance is ready.
    """
    settings = get_settings()
    rows = svc.status(settings, svc.known(settings))
    if as_json:
        print_json(rows)
    else:
        console.print(ps_table(rows))
    if not all(r.state == "ready" for r in rows):
        raise typer.Exit(1)


def parse_counts(pairs: list[str]) -> dict[str, int]:
    """``["worker=3", "gateways=2"]`` → ``{"worker": 3, "gateway": 2}``; raises ValueError
    naming the pair that is not ``SERVICE=N`` with a known service and 0 ≤ N ≤ the bound."""
    counts: dict[str, int] = {}
    for pair in pairs:
        name, sep, number = pair.partition("=")
        kind = name.strip().lower()
        kind = kind[:-1] if kind.endswith("s") and kind[:-1] in svc.KINDS else kind
        if not sep or kind not in svc.KINDS:
            raise ValueError(f"{pair!r}: expected SERVICE=N with SERVICE one of "
                             f"{', '.join(svc.KINDS)}")  # fmt: skip
        if not number.strip().isdigit() or int(number) > MAX_INSTANCES:
            raise ValueError(f"{pair!r}: N must be a whole number from 0 to {MAX_INSTANCES}")
        counts[kind] = int(number)
    return counts


def scale(
    pairs: list[str] = typer.Argument(
        ..., metavar="SERVICE=N...", help="e.g. worker=3 orchestrator=2 (0 stops them all)."
    ),
) -> None:
    """Run exactly N instances of each given service: start the missing ones (waiting
    until they are ready), stop the ones above N. Kafka's consumer groups move the
    partitions; nothing is lost or done twice (docs/operations.md)."""
    try:
        counts = parse_counts(pairs)
    except ValueError as exc:
        console.print(f"[red]scale:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from exc
    settings = get_settings()
    try:
        with svc.exclusive(settings):
            for kind in svc.KINDS:
                if kind in counts:
                    svc.scale(settings, kind, counts[kind], report=_say)
    except svc.ServiceError as exc:
        console.print(f"[red]scale failed:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    console.print(ps_table(svc.status(settings, svc.known(settings))))


def register(app: typer.Typer) -> None:
    """Add ``up``, ``down``, ``ps`` and ``scale`` to the root ``foldflow`` app."""
    app.command("up", epilog="Exit codes: 0 everything is up and ready; 1 a part failed "
                             "(its log tail is printed).")(up)
    app.command("down")(down)
    app.command("ps", epilog="Exit codes: 0 every service is ready; 1 one is not.")(ps)
    app.command("scale", epilog="Exit codes: 0 every instance asked for is ready; 1 one is "
                                "not; 2 a count is not SERVICE=N.")(scale)

