"""One attempt: handler outcomes become TaskSucceeded / TaskFailed (no Kafka)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from foldflow.schemas.messages import (
    Envelope,
    ExecuteTask,
    TaskFailed,
    TaskSucceeded,
    derived_id,
    dump_json,
)
from foldflow.workers.execution import (
    MAX_ERROR_CHARS,
    MAX_OUTPUT_BYTES,
    result_envelope,
    run_attempt,
)
from foldflow.workers.registry import NonRetryableError, RetryableError, TaskContext, TaskRegistry


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as p:
        yield p


def command(
    input: Any, *, timeout_ms: int = 5_000, attempt: int = 2, raw: str | None = None
) -> Envelope:
    return Envelope(
        event_id="cmd-1",
        timestamp=1,
        source="orchestrator",
        correlation_id="corr",
        workflow_id="wf-1",
        payload=ExecuteTask(
            task_id="wf-1:s:run:2",
            task_type="t",
            step_id="s",
            attempt=attempt,
            kind="compensation",
            input_json=raw if raw is not None else dump_json(input),
            timeout_ms=timeout_ms,
        ),
    )


def registry_with(handler: Any) -> TaskRegistry:
    registry = TaskRegistry()
    registry.register("t", handler)
    return registry


async def run(handler: Any, cmd: Envelope, pool: ThreadPoolExecutor) -> Any:
    spec = registry_with(handler).get("t")
    assert spec is not None
    return await run_attempt(spec, cmd, pool=pool)


async def test_sync_handler_output_and_context(pool: ThreadPoolExecutor) -> None:
    seen: list[TaskContext] = []

    def handler(input: Any, ctx: TaskContext) -> Any:
        seen.append(ctx)
        return {"got": input}

    outcome = await run(handler, command({"a": 1}), pool)

    assert outcome.outcome == "succeeded"
    assert isinstance(outcome.result, TaskSucceeded)
    assert json.loads(outcome.result.output_json) == {"got": {"a": 1}}
    assert (outcome.result.task_id, outcome.result.attempt, outcome.result.kind) == (
        "wf-1:s:run:2",
        2,
        "compensation",
    )
    [ctx] = seen
    assert (ctx.task_id, ctx.workflow_id, ctx.step_id, ctx.attempt) == (
        "wf-1:s:run:2",
        "wf-1",
        "s",
        2,
    )
    assert ctx.deadline is not None and ctx.deadline > time.time()


async def test_async_handler(pool: ThreadPoolExecutor) -> None:
    async def handler(input: Any, ctx: TaskContext) -> Any:
        await asyncio.sleep(0)
        return [input, ctx.kind]

    outcome = await run(handler, command(3), pool)
    assert isinstance(outcome.result, TaskSucceeded)
    assert outcome.result.output_json == '[3,"compensation"]'


@pytest.mark.parametrize(
    ("exc", "retryable", "error"),
    [
        (RetryableError("busy"), True, "busy"),
        (NonRetryableError("bad card"), False, "bad card"),
        (KeyError("k"), True, "'k'"),
        (RuntimeError(), True, "RuntimeError"),
    ],
)
async def test_exceptions_become_task_failed(
    pool: ThreadPoolExecutor, exc: Exception, retryable: bool, error: str
) -> None:
    def handler(input: Any, ctx: TaskContext) -> Any:
        raise exc

    outcome = await run(handler, command(None), pool)
    assert isinstance(outcome.result, TaskFailed)
    assert (outcome.result.retryable, outcome.result.error) == (retryable, error)
    assert outcome.outcome == "failed"


async def test_async_timeout_is_a_retryable_failure(pool: ThreadPoolExecutor) -> None:
    async def handler(input: Any, ctx: TaskContext) -> Any:
        await asyncio.sleep(30)

    outcome = await run(handler, command(None, timeout_ms=50), pool)
    assert isinstance(outcome.result, TaskFailed)
    assert outcome.result.error == "timed out after 50 ms"
    assert outcome.result.retryable and outcome.result.timed_out
    assert outcome.outcome == "timed_out"


async def test_sync_timeout_is_a_retryable_failure(pool: ThreadPoolExecutor) -> None:
    def handler(input: Any, ctx: TaskContext) -> Any:
        time.sleep(0.5)

    outcome = await run(handler, command(None, timeout_ms=50), pool)
    assert isinstance(outcome.result, TaskFailed) and outcome.result.timed_out
    assert outcome.outcome == "timed_out"


async def test_handlers_own_timeout_error_is_not_the_attempt_timeout(
    pool: ThreadPoolExecutor,
) -> None:
    async def handler(input: Any, ctx: TaskContext) -> Any:
        raise TimeoutError("downstream timed out")

    outcome = await run(handler, command(None, timeout_ms=5_000), pool)
    assert isinstance(outcome.result, TaskFailed)
    assert outcome.result.error == "downstream timed out"
    assert not outcome.result.timed_out
    assert outcome.outcome == "failed"


async def test_outputs_and_errors_that_could_not_travel_fail_clearly(
    pool: ThreadPoolExecutor,
) -> None:
    big = await run(lambda i, c: "x" * (MAX_OUTPUT_BYTES + 1), command(None), pool)
    assert isinstance(big.result, TaskFailed) and not big.result.retryable
    assert f"over the {MAX_OUTPUT_BYTES}-byte limit" in big.result.error
    fits = await run(lambda i, c: "x" * (MAX_OUTPUT_BYTES - 2), command(None), pool)
    assert isinstance(fits.result, TaskSucceeded)

    lone = await run(lambda i, c: {"s": "\ud800"}, command(None), pool)
    assert isinstance(lone.result, TaskFailed) and "lone surrogate" in lone.result.error

    def shout(input: Any, ctx: TaskContext) -> Any:
        raise RuntimeError("\udc80" + "e" * 100_000)

    loud = await run(shout, command(None), pool)
    assert isinstance(loud.result, TaskFailed) and loud.result.retryable
    assert loud.result.error.startswith("\\udc80eee")
    assert len(loud.result.error) < MAX_ERROR_CHARS + 100
    loud.result.error.encode("utf-8")  # travels


async def test_bad_input_and_bad_output_are_not_retryable(pool: ThreadPoolExecutor) -> None:
    bad_input = await run(lambda i, c: i, command(None, raw="{nope"), pool)
    assert isinstance(bad_input.result, TaskFailed) and not bad_input.result.retryable
    assert "not valid JSON" in bad_input.result.error

    bad_output = await run(lambda i, c: object(), command(None), pool)
    assert isinstance(bad_output.result, TaskFailed) and not bad_output.result.retryable
    assert "not JSON-serialisable" in bad_output.result.error


def test_result_envelope_ids() -> None:
    cmd = command(None)
    result = TaskSucceeded("wf-1:s:run:2", "s", 2, "compensation", "null")
    env = result_envelope(cmd, result, timestamp=99)
    assert env.event_id == derived_id("cmd-1", 0)
    assert (env.workflow_id, env.correlation_id, env.causation_id) == ("wf-1", "corr", "cmd-1")
    assert (env.timestamp, env.source, env.sequence) == (99, "worker", None)
    assert env.event_type == "task.succeeded.v1"
