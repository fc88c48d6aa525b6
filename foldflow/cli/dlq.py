"""``foldflow dlq list|replay``: look at and re-drive the dead letters of ``wf.dlq``."""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import typer
from confluent_kafka import KafkaException, Producer
from rich.console import Console
from rich.table import Table

from foldflow.cli.output import FAILED, JsonOption, err, print_json
from foldflow.dlq import DeadLetter, read_dead_letters, replay
from foldflow.durations import parse_duration_ms
from foldflow.settings import get_settings

__all__ = ["app", "dead_letter_json", "dlq_table", "parse_since"]

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


def dead_letter_json(letter: DeadLetter) -> dict[str, Any]:
    """One dead letter for ``--json``: its reason, origin and the original bytes (base64)."""
    return {
        "time": datetime.fromtimestamp(letter.timestamp_ms / 1000, tz=UTC).isoformat(),
        "timestamp_ms": letter.timestamp_ms,
        "reason": letter.reason,
        "reason_kind": letter.reason_kind,
        "origin_topic": letter.origin_topic,
        "origin_partition": letter.origin_partition,
        "origin_offset": letter.origin_offset,
        "event_type": letter.event_type,
        "key": letter.key.decode(errors="replace") if letter.key is not None else None,
        "value_base64": base64.b64encode(letter.value).decode() if letter.value else None,
        "headers": {name: (value or b"").decode(errors="replace")
                    for name, value in letter.headers},
        "dlq_partition": letter.dlq_partition,
        "dlq_offset": letter.dlq_offset,
    }


def _read(since: str | None) -> list[DeadLetter]:
    settings = get_settings()
    since_ms = parse_since(since, now_ms=int(time.time() * 1000)) if since else None
    try:
        return read_dead_letters(settings, since_ms=since_ms)
    except KafkaException as exc:
        err.print(f"[red]reading the DLQ failed:[/red] {exc}", highlight=False)
        raise typer.Exit(FAILED) from exc


SinceOption = typer.Option(None, "--since", metavar="DURATION|TIME",
                           help="Only since: a duration ago (15m, 2h, 1d) or an ISO 8601 time.")


@app.command("list", epilog="Exit codes: 0 listed; 1 Kafka failed; 2 bad --since.")
def list_(
    limit: int = typer.Option(50, "--limit", min=1, max=100_000, help="Show the newest N."),
    since: str | None = SinceOption,
    as_json: bool = JsonOption,
) -> None:
    """Show the newest dead letters."""
    letters = sorted(_read(since), key=lambda d: (d.timestamp_ms, d.dlq_partition, d.dlq_offset))
    shown = letters[-limit:]
    if as_json:
        print_json([dead_letter_json(letter) for letter in shown])
        return
    console.print(dlq_table(shown, title=f"wf.dlq: {len(shown)} of {len(letters)}"))


@app.command("replay", epilog="Exit codes: 0 replayed (or nothing to replay); 1 Kafka "
                              "failed; 2 bad --since.")
def replay_(since: str | None = SinceOption, as_json: bool = JsonOption) -> None:
    """Re-publish the original bytes of each dead letter to its topic of origin."""
    from foldflow.producers import producer_config  # lazy: the CLI is the composition root

    letters = _read(since)
    if not letters:
        if as_json:
            print_json([])
        else:
            console.print("nothing to replay")
        return
    settings = get_settings()
    producer = Producer(producer_config(settings, source="cli-dlq-replay"))
    try:
        sent = replay(producer, letters)
    except KafkaException as exc:
        err.print(f"[red]replay failed:[/red] {exc}", highlight=False)
        raise typer.Exit(FAILED) from exc
    skipped = len(letters) - len(sent)
    if as_json:
        print_json([dead_letter_json(letter) for letter in sent])
    else:
        console.print(dlq_table(sent, title=f"replayed {len(sent)} dead letter(s)"))
    if skipped:
        err.print(f"[yellow]{skipped} without a topic of origin were skipped[/yellow]")
