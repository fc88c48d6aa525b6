"""JSON log lines carry service, instance, bound ids and the current span's ids."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from foldflow.observability.logging import RepeatFilter, bind, configure_logging
from foldflow.settings import Settings

KEYS = {
    "timestamp", "level", "service", "instance", "message",
    "correlation_id", "workflow_id", "trace_id", "span_id",
}


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging(
        Settings(instance_id="test-1", log_level="debug"), service="svc", stream=stream
    )
    yield stream
    logging.getLogger().removeHandler(handler)


def _records(stream: io.StringIO) -> list[dict[str, object]]:
    """The lines this test's logger wrote (asyncio and others may log too)."""
    parsed = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [r for r in parsed if r["logger"] == "t"]


def test_a_plain_line_has_every_key(lines: io.StringIO) -> None:
    logging.getLogger("t").info("hello %s", "world")

    (record,) = _records(lines)
    assert record.keys() >= KEYS
    assert record["message"] == "hello world"
    assert (record["level"], record["service"], record["instance"]) == ("INFO", "svc", "test-1")
    assert record["workflow_id"] is None and record["trace_id"] is None


def test_bound_ids_span_ids_and_extra_fields_appear(lines: io.StringIO) -> None:
    tracer = TracerProvider().get_tracer(__name__)
    with (
        bind(workflow_id="wf-1", correlation_id="c-1"),
        tracer.start_as_current_span("handle") as span,
    ):
        logging.getLogger("t").warning("step", extra={"step_id": "charge"})
    logging.getLogger("t").info("after")

    inside, after = _records(lines)
    ctx = span.get_span_context()
    assert (inside["workflow_id"], inside["correlation_id"]) == ("wf-1", "c-1")
    assert inside["trace_id"] == format(ctx.trace_id, "032x")
    assert inside["span_id"] == format(ctx.span_id, "016x")
    assert inside["step_id"] == "charge"
    assert after["workflow_id"] is None and after["trace_id"] is None


async def test_bound_ids_follow_each_asyncio_task(lines: io.StringIO) -> None:
    async def handle(workflow_id: str) -> None:
        with bind(workflow_id=workflow_id):
            await asyncio.sleep(0)
            logging.getLogger("t").info("handled")

    await asyncio.gather(handle("a"), handle("b"))

    assert sorted(str(r["workflow_id"]) for r in _records(lines)) == ["a", "b"]


def test_configure_twice_installs_one_handler(lines: io.StringIO) -> None:
    handler = configure_logging(Settings(instance_id="test-2"), service="svc", stream=lines)
    try:
        logging.getLogger("t").warning("once")
        assert len(_records(lines)) == 1
        assert _records(lines)[0]["instance"] == "test-2"
    finally:
        logging.getLogger().removeHandler(handler)


def test_a_repeated_line_is_limited_and_the_next_one_through_counts_the_dropped() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RepeatFilter("3 per 1 second"))
    log = logging.getLogger("t.repeat")
    log.addHandler(handler)
    log.propagate = False
    try:
        for i in range(10):
            log.error("Unable connect to node with id %d", i)
        log.error("another message")  # another format string: its own budget
        assert stream.getvalue().count("Unable connect") == 3
        assert "another message" in stream.getvalue()
        records: list[logging.LogRecord] = []
        handler.emit = records.append  # type: ignore[method-assign]
        time.sleep(1.1)  # the next window
        log.error("Unable connect to node with id %d", 99)
        assert [getattr(r, "suppressed", None) for r in records] == [7]
    finally:
        log.removeHandler(handler)
        log.propagate = True
