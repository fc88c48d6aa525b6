"""The console's dead-letter page: ``wf.dlq`` with reason, origin, time and a payload
preview, and the replay of one record or of every record a filter shows.

Dead letters belong to no tenant (an undecodable record names none), so the page is for
operators: reading needs the scope ``dlq:read``, replaying ``dlq:replay``; a tenant's
ordinary key holds neither. Reading and replaying are :mod:`foldflow.dlq`'s (what
``foldflow dlq list|replay`` does), run in a worker thread, bounded to the newest
:data:`READ_PER_PARTITION` records of each partition.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from confluent_kafka import KafkaException, Producer
from fastapi import APIRouter, Depends, Form, Query, Request
from starlette.responses import RedirectResponse, Response

from foldflow import dlq
from foldflow.gateway.errors import DependencyUnavailable, ProblemError
from foldflow.gateway.ui.access import UiRoute, Viewer, ViewerDep, require_csrf
from foldflow.gateway.ui.render import html
from foldflow.projections.rows import payload_document
from foldflow.schemas import codec
from foldflow.settings import Settings

__all__ = ["Letter", "LetterFilter", "preview", "router"]

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

READ_PER_PARTITION = 1000
SHOWN = 200
_READ_TIMEOUT_S = 10.0
_SINCE = {"15m": 900, "1h": 3600, "24h": 86400, "7d": 7 * 86400}
_PREVIEW_BYTES = 600


@dataclass(frozen=True)
class Letter:
    """A dead letter as the page shows it."""

    ref: str  # "<partition>:<offset>" in wf.dlq
    record: dlq.DeadLetter
    when: datetime
    key: str
    preview: Any
    decoded: bool


@dataclass(frozen=True)
class LetterFilter:
    """Which dead letters the page shows (and a filtered replay re-drives)."""

    since: str = ""
    kind: str = ""
    topic: str = ""
    text: str = ""

    def since_ms(self, now_ms: int) -> int | None:
        """The oldest parking time shown, or None (all)."""
        seconds = _SINCE.get(self.since)
        return now_ms - seconds * 1000 if seconds else None

    def keeps(self, letter: Letter) -> bool:
        """Whether ``letter`` passes the kind, topic and text filters."""
        record = letter.record
        if self.kind and record.reason_kind != self.kind:
            return False
        if self.topic and record.origin_topic != self.topic:
            return False
        needle = self.text.lower()
        haystack = f"{record.reason} {letter.key} {record.event_type or ''}".lower()
        return not needle or needle in haystack


def _filter(
    since: Annotated[str, Query(max_length=10)] = "",
    kind: Annotated[str, Query(max_length=200)] = "",
    topic: Annotated[str, Query(max_length=300)] = "",
    text: Annotated[str, Query(max_length=200)] = "",
) -> LetterFilter:
    return LetterFilter(since=since if since in _SINCE else "", kind=kind, topic=topic,
                        text=text.strip())  # fmt: skip


def preview(value: bytes | None) -> tuple[Any, bool]:
    """What a record holds: its envelope as a document when it decodes, else the start of
    its bytes (text where they are text)."""
    try:
        envelope = codec.decode(value)
    except (codec.CodecError, KeyError, ValueError):
        raw = (value or b"")[:_PREVIEW_BYTES]
        more = len(value or b"") - len(raw)
        text = raw.decode("utf-8", errors="replace") + (f"… ({more} more bytes)" if more else "")
        return {"bytes": len(value or b""), "text": text, "hex": raw[:64].hex()}, False
    document = {
        "event_type": envelope.event_type, "workflow_id": envelope.workflow_id,
        "tenant": envelope.tenant, "event_id": envelope.event_id, "source": envelope.source,
        "payload": payload_document(envelope.payload),
    }  # fmt: skip
    return document, True


def _letter(record: dlq.DeadLetter) -> Letter:
    shown, decoded = preview(record.value)
    return Letter(
        ref=f"{record.dlq_partition}:{record.dlq_offset}", record=record,
        when=datetime.fromtimestamp(record.timestamp_ms / 1000, tz=UTC),
        key=record.key.decode(errors="replace") if record.key is not None else "",
        preview=shown, decoded=decoded,
    )  # fmt: skip


async def _read(settings: Settings, wanted: LetterFilter) -> list[Letter]:
    since = wanted.since_ms(int(time.time() * 1000))
    try:
        records = await asyncio.to_thread(
            dlq.read_dead_letters, settings, since_ms=since, timeout=_READ_TIMEOUT_S,
            newest_per_partition=READ_PER_PARTITION,
        )  # fmt: skip
    except KafkaException as exc:
        raise DependencyUnavailable("kafka", f"reading the dead letters failed: {exc}") from exc
    letters = [_letter(r) for r in records]
    letters.sort(key=lambda x: (x.record.timestamp_ms, x.record.dlq_partition,
                                x.record.dlq_offset), reverse=True)  # fmt: skip
    return letters


def _replay(settings: Settings, records: Sequence[dlq.DeadLetter]) -> list[dlq.DeadLetter]:
    from foldflow.producers import producer_config

    producer = Producer(producer_config(settings, source="console-dlq-replay"))
    return dlq.replay(producer, records)


@router.get("/dlq", response_class=Response)
async def dlq_page(
    viewer: ViewerDep, wanted: Annotated[LetterFilter, Depends(_filter)]
) -> Response:
    """The newest dead letters, filtered."""
    viewer.principal.require("dlq:read")
    letters = await _read(viewer.ctx.settings, LetterFilter(since=wanted.since))
    kinds = sorted({x.record.reason_kind for x in letters})
    topics = sorted({x.record.origin_topic for x in letters if x.record.origin_topic})
    shown = [x for x in letters if wanted.keeps(x)]
    return html("dlq.html", {
        "viewer": viewer, "nav": "dlq", "letters": shown[:SHOWN], "matching": len(shown),
        "read": len(letters), "filter": wanted, "kinds": kinds, "topics": topics,
        "since_options": list(_SINCE), "per_partition": READ_PER_PARTITION,
    })  # fmt: skip


@router.post("/dlq/replay", response_class=Response)
async def dlq_replay(
    request: Request,
    viewer: Annotated[Viewer, Depends(require_csrf)],
    record: Annotated[str, Form(max_length=40)] = "",
    since: Annotated[str, Form(max_length=10)] = "",
    kind: Annotated[str, Form(max_length=200)] = "",
    topic: Annotated[str, Form(max_length=300)] = "",
    text: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Re-publish one dead letter (``record``) or every one the filter matches."""
    viewer.principal.require("dlq:replay")
    wanted = _filter(since=since, kind=kind, topic=topic, text=text)
    letters = [x for x in await _read(viewer.ctx.settings, LetterFilter(since=wanted.since))
               if wanted.keeps(x)]  # fmt: skip
    if record:
        letters = [x for x in letters if x.ref == record]
        if not letters:
            raise ProblemError(404, f"no dead letter {record} (within the newest "
                               f"{READ_PER_PARTITION} of its partition)", kind="not-found")
    try:
        sent = await asyncio.to_thread(_replay, viewer.ctx.settings, [x.record for x in letters])
    except KafkaException as exc:
        raise DependencyUnavailable("kafka", f"the replay was not acked: {exc}") from exc
    skipped = len(letters) - len(sent)
    message = f"Replayed {len(sent)} dead letter(s) to their topics of origin" + (
        f"; {skipped} without a topic of origin were skipped." if skipped else ".")
    if request.headers.get("HX-Request"):
        return html("_flash.html", {"level": "ok", "message": message})
    return RedirectResponse("/ui/dlq", status_code=303)
