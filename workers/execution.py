"""Running one attempt: an ``ExecuteTask`` in, a ``TaskSucceeded`` or ``TaskFailed`` out.

No Kafka here: :func:`run_attempt` calls the handler (async on the event loop, sync in a
thread pool), enforces the attempt timeout and turns every outcome into a result payload;
:func:`result_envelope` wraps it with the ids docs/architecture.md and docs/internals.md ask for.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from concurrent.futures import Executor
from dataclasses import dataclass

from foldflow.schemas.messages import (
    Envelope,
    ExecuteTask,
    TaskFailed,
    TaskSucceeded,
    derived_id,
    dump_json,
    load_json,
)
from foldflow.workers.registry import NonRetryableError, TaskContext, TaskSpec

__all__ = ["Outcome", "result_envelope", "run_attempt"]

#: The ``source`` of every result a worker publishes.
SOURCE = "worker"
#: Bytes of a step output as JSON (UTF-8). A result must fit one Kafka message (1 MB by
#: default) or it could never be acked; the gateway bounds a value it accepts the same.
MAX_OUTPUT_BYTES = 256 * 1024
#: Characters of an error message a result carries (the rest is cut, and said so).
MAX_ERROR_CHARS = 8 * 1024


@dataclass(frozen=True)
class Outcome:
    """The result of one attempt and how it went (for metrics and logs)."""

    result: TaskSucceeded | TaskFailed
    outcome: str  # "succeeded" | "failed" | "timed_out"
    duration: float  # seconds the handler ran


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if len(text) > MAX_ERROR_CHARS:
        text = f"{text[:MAX_ERROR_CHARS]}… ({len(text) - MAX_ERROR_CHARS} more characters)"
    # a lone surrogate cannot travel as UTF-8: written as its escape instead
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode()


async def run_attempt(
    spec: TaskSpec, command: Envelope, *, pool: Executor, now: float | None = None
) -> Outcome:
    """Run ``spec``'s handler for the ``ExecuteTask`` in ``command``; never raises (except
    :class:`asyncio.CancelledError`).

    A handler that exceeds ``timeout_ms`` (when > 0) yields a retryable ``TaskFailed``
    "timed out after … ms" with ``timed_out`` set (as the orchestrator's own timeout
    does); a sync handler cannot be interrupted, so its thread keeps running until it
    returns, but its result is discarded.
    """
    task = command.payload
    assert isinstance(task, ExecuteTask)
    started = time.time() if now is None else now
    timeout = task.timeout_ms / 1000 if task.timeout_ms > 0 else None
    ctx = TaskContext(
        task_id=task.task_id,
        workflow_id=command.workflow_id,
        step_id=task.step_id,
        attempt=task.attempt,
        kind=task.kind,
        deadline=started + timeout if timeout is not None else None,
        task_type=task.task_type,
        correlation_id=command.correlation_id,
    )

    def failed(error: str, retryable: bool, *, timed_out: bool = False) -> TaskFailed:
        return TaskFailed(
            task.task_id, task.step_id, task.attempt, task.kind, error, retryable, timed_out
        )

    clock = time.monotonic()
    try:
        value = load_json(task.input_json)
    except ValueError as exc:
        return Outcome(failed(f"input_json is not valid JSON: {exc}", False), "failed", 0.0)
    timer = asyncio.timeout(timeout)
    try:
        async with timer:
            if spec.is_async:
                output = await spec.handler(value, ctx)
            else:
                loop = asyncio.get_running_loop()
                run = contextvars.copy_context().run
                output = await loop.run_in_executor(pool, run, spec.handler, value, ctx)
    except Exception as exc:  # any exception but NonRetryableError is retryable by contract
        elapsed = time.monotonic() - clock
        if isinstance(exc, TimeoutError) and timer.expired():
            return Outcome(
                failed(f"timed out after {task.timeout_ms} ms", True, timed_out=True),
                "timed_out",
                elapsed,
            )
        retryable = not isinstance(exc, NonRetryableError)
        return Outcome(failed(_error_text(exc), retryable), "failed", elapsed)
    duration = time.monotonic() - clock
    try:
        output_json = dump_json(output)
        size = len(output_json.encode("utf-8"))
    except UnicodeEncodeError:
        error = "output holds a lone surrogate (\\ud800-\\udfff), which UTF-8 cannot encode"
        return Outcome(failed(error, False), "failed", duration)
    except (TypeError, ValueError, RecursionError) as exc:
        error = f"output is not JSON-serialisable: {_error_text(exc)}"
        return Outcome(failed(error, False), "failed", duration)
    if size > MAX_OUTPUT_BYTES:
        error = f"output is {size} bytes as JSON, over the {MAX_OUTPUT_BYTES}-byte limit"
        return Outcome(failed(error, False), "failed", duration)
    result = TaskSucceeded(task.task_id, task.step_id, task.attempt, task.kind, output_json)
    return Outcome(result, "succeeded", duration)


def result_envelope(
    command: Envelope, result: TaskSucceeded | TaskFailed, *, timestamp: int
) -> Envelope:
    """The envelope of a result: same workflow and correlation as the command, caused by
    it, with an id derived from the command's (a redelivered command gets the same id)."""
    return Envelope(
        event_id=derived_id(command.event_id, 0),
        timestamp=timestamp,
        source=SOURCE,
        correlation_id=command.correlation_id,
        workflow_id=command.workflow_id,
        payload=result,
        causation_id=command.event_id,
    )
