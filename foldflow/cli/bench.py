"""``foldflow bench``: the benchmark against the real services and broker.

Starts its own orchestrator, projector and worker(s) as ``foldflow run …`` subprocesses on
private topics (a unique prefix, deleted afterwards) and the configured database, drives
k-step no-op workflows through them, measures raw Kafka in the same run, and prints every
figure beside its target. The harness is the ``bench`` package (installed with Foldflow's
server extras); this module is only its command line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console

from foldflow.cli.output import FAILED, INTERRUPTED, USAGE, JsonOption, duration_option, err
from foldflow.settings import get_settings

__all__ = ["bench"]

console = Console()


def bench(
    steps: int = typer.Option(3, "--steps", "-k", min=1, max=50,
                              help="No-op builtin.echo steps per workflow (sequential)."),
    concurrency: int = typer.Option(200, "--concurrency", min=1,
                                    help="Workflows in flight in the throughput phase."),
    duration: float = duration_option(30.0, "--duration",
                                      help="How long the throughput phase runs (at least 1s)."),
    total: int | None = typer.Option(None, "--total", min=1,
                                     help="Stop the throughput phase after this many starts."),
    latency_duration: float = duration_option(
        30.0, "--latency-duration",
        help="How long the latency phase runs (open loop at half load); 0 skips it."),
    latency_rate: float | None = typer.Option(
        None, "--latency-rate", min=0.1,
        help="Starts/s of the latency phase (default: half the target, or half the "
             "measured throughput when that is lower)."),
    warmup: float = duration_option(3.0, "--warmup",
                                    help="The start of each phase left out of rates."),
    warm_up_load: float = duration_option(
        20.0, "--warm-up-load",
        help="Closed-loop load, not measured, before the throughput phase (0: only 20 "
             "warm-up workflows). A freshly started Kafka compiles its hot paths (JIT) "
             "during its first minute of load and would count that CPU in the figures."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes (builtin.echo)."),
    worker_concurrency: int = typer.Option(32, "--worker-concurrency", min=1,
                                           help="Handlers each worker runs at once."),
    baseline_messages: int = typer.Option(
        100_000, "--baseline-messages", min=0,
        help="Messages of the raw-Kafka baseline (0 skips it; no ratios then)."),
    alone_workflows: int = typer.Option(
        100_000, "--alone-workflows", min=0,
        help="Workflows of the orchestrator-alone phase (workers and projector stopped: "
             "a backlog of that many starts, then of their results; 0 skips it)."),
    profile: bool = typer.Option(
        False, "--profile", help="When a target is missed, py-spy the orchestrator under "
                                 "load and show where its time goes."),
    profile_seconds: float = duration_option(8.0, "--profile-seconds",
                                             help="How long py-spy samples (under load)."),
    log_level: str | None = typer.Option(
        None, "--log-level", help="FOLDFLOW_LOG_LEVEL of the services (default: settings)."),
    keep_topics: bool = typer.Option(False, "--keep-topics",
                                     help="Keep the run's private topics for inspection."),
    as_json: bool = JsonOption,
    json_file: Path | None = typer.Option(None, "--output", "-o",
                                          help="Also write the run as JSON to this file."),
    compare: Path | None = typer.Option(
        None, "--compare", exists=True, dir_okay=False,
        help="An earlier run's --json: show how each figure moved since."),
) -> None:
    """Benchmark workflows end to end and compare with raw Kafka.

    Uses FOLDFLOW_KAFKA_BOOTSTRAP and FOLDFLOW_DATABASE_URL (give it a database of its
    own); topics get a unique prefix and are deleted at the end. The targets are in
    docs/architecture.md.
    """
    if duration < 1:
        raise typer.BadParameter("at least 1s", param_hint="--duration")
    if profile_seconds < 1:
        raise typer.BadParameter("at least 1s", param_hint="--profile-seconds")
    from foldflow.bench.report import load_previous, render, to_json_text
    from foldflow.bench.run import BenchConfig, BenchError, run_benchmark

    previous = None
    if compare is not None:
        try:
            previous = load_previous(json.loads(compare.read_text()))
        except (OSError, ValueError) as exc:
            err.print(f"[red]--compare: cannot read {compare}:[/red] {exc}", highlight=False)
            raise typer.Exit(USAGE) from exc

    config = BenchConfig(
        steps=steps, concurrency=concurrency, duration=duration, total=total,
        latency_duration=latency_duration, latency_rate=latency_rate, warmup=warmup,
        warm_up_load=warm_up_load,
        workers=workers, worker_concurrency=worker_concurrency,
        baseline_messages=baseline_messages, profile=profile, profile_seconds=profile_seconds,
        alone_workflows=alone_workflows,
        keep_topics=keep_topics, log_level=log_level,
    )

    def progress(line: str) -> None:
        err.print(f"[dim]{line}[/dim]", highlight=False)

    try:
        result = run_benchmark(get_settings(), config, progress=progress)
    except (BenchError, RuntimeError) as exc:
        err.print(f"[red]benchmark failed:[/red] {exc}", highlight=False)
        raise typer.Exit(FAILED) from exc
    except KeyboardInterrupt:
        err.print("[yellow]interrupted; services stopped, topics deleted[/yellow]")
        raise typer.Exit(INTERRUPTED) from None
    if as_json:
        sys.stdout.write(to_json_text(result) + "\n")
    else:
        console.print(render(result, previous=previous))
    if json_file is not None:
        json_file.write_text(to_json_text(result) + "\n")
        err.print(f"written {json_file}", highlight=False)
