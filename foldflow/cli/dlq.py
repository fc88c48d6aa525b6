"""``foldflow dlq list|replay``: look at and re-drive the dead letters of ``wf.dlq``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import typer
from confluent_kafka import KafkaException, Producer
from rich.console import Console
from rich.table import Table

from foldflow.dlq import DeadLetter, read_dead_letters, replay
from foldflow.durations import parse_duration_ms
from foldflow.settings import get_settings

__all__ = ["app", "dlq_table", "parse_since"]

app = typer.Typer(help="Dead letters on wf.dlq.", no_args_is_help=True)
console = Console()

def parse_since(text: str, *, now_ms: int) -> int:
    """A duration ago (``"15m"``, ``"2h"``, ``"1d"``: :mod:`foldflow.durations`), or an
    ISO 8601 time (UTC if no zone) → epoch ms."""
    with contextlib.suppress(ValueError):
        return now_ms - parse_duration_ms(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r} is neither a duration (30s, 15m, 2h, 1d) nor an ISO 8601 time"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def dlq_table(letters: Sequence[DeadLetter], *, title: str) -> Table:
    """Dead letters as a table: reason, origin topic/partition/offset, time, event type."""
    table = Table(title=title)
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("reason", overflow="fold", ratio=3)
    table.add_column("origin", overflow="fold", ratio=2)
    table.add_column("event type", overflow="fold", ratio=1)
    table.add_column("key", overflow="fold", ratio=1)
    for letter in letters:
        origin = (
            f"{letter.origin_topic}[{letter.origin_partition}]@{letter.origin_offset}"
            if letter.origin_topic else "-"
        )
        key = letter.key.decode(errors="replace") if letter.key is not None else "-"
        table.add_row(_when(letter.timestamp_ms), f"{letter.reason_kind}: {letter.reason}",
                      origin, letter.event_type or "(undecodable)", key)
    return table


def _read(since: str | None) -> list[DeadLetter]:
    settings = get_settings()
    since_ms = parse_since(since, now_ms=int(time.time() * 1000)) if since else None
    try:
        return read_dead_letters(settings, since_ms=since_ms)
    except KafkaException as exc:
        console.print(f"[red]reading the DLQ failed:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc


@app.command("list")
def list_(
    limit: int = typer.Option(50, "--limit", min=1, help="Show the newest N."),
    since: str | None = typer.Option(None, "--since", help="Only since (15m, 2h, ISO time)."),
) -> None:
    """Show the newest dead letters."""
    letters = sorted(_read(since), key=lambda d: (d.timestamp_ms, d.dlq_partition, d.dlq_offset))
    shown = letters[-limit:]
    console.print(dlq_table(shown, title=f"wf.dlq: {len(shown)} of {len(letters)}"))


@app.command("replay")
def replay_(
    since: str | None = typer.Option(None, "--since", help="Only since (15m, 2h, ISO time)."),
) -> None:
    """Re-publish the original bytes of each dead letter to its topic of origin."""
    from producers import producer_config  # lazy: the CLI is the composition root

    letters = _read(since)
    if not letters:
        console.print("nothing to replay")
        return
    settings = get_settings()
    producer = Producer(producer_config(settings, source="cli-dlq-replay"))
    try:
        sent = replay(producer, letters)
    except KafkaException as exc:
        console.print(f"[red]replay failed:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    console.print(dlq_table(sent, title=f"replayed {len(sent)} dead letter(s)"))
    skipped = len(letters) - len(sent)
    if skipped:
        console.print(f"[yellow]{skipped} without a topic of origin were skipped[/yellow]")
