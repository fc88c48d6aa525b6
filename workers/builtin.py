"""The built-in task types every worker serves, so definitions can be tried without writing
code: ``builtin.echo``, ``builtin.sleep``, ``builtin.fail``, ``builtin.http``
(:mod:`foldflow.workers.builtin_http`).

:func:`builtin_registry` builds their registry (``builtin.http`` under the operator's
options); ``foldflow run worker`` merges it with the user's. :data:`registry` is the one
with the default options: public addresses only.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Any

from foldflow.workers.builtin_http import HttpOptions, http_task
from foldflow.workers.registry import NonRetryableError, RetryableError, TaskContext, TaskRegistry

__all__ = ["builtin_registry", "echo", "fail", "registry", "sleep"]


async def echo(input: Any, ctx: TaskContext) -> Any:
    """Output = input (a coroutine: nothing blocks, so no thread is needed)."""
    return input


def _mapping(input: Any, task_type: str) -> Mapping[str, Any]:
    if not isinstance(input, Mapping):
        raise NonRetryableError(f"{task_type} needs an object as input, got {type(input).__name__}")
    return input


async def sleep(input: Any, ctx: TaskContext) -> Any:
    """``{"seconds": x}``: sleeps ``x`` seconds, then echoes its input."""
    seconds = _mapping(input, "builtin.sleep").get("seconds", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise NonRetryableError(f"builtin.sleep: seconds must be a number >= 0, got {seconds!r}")
    if not math.isfinite(seconds):
        raise NonRetryableError("builtin.sleep: seconds must be finite")
    await asyncio.sleep(seconds)
    return input


async def fail(input: Any, ctx: TaskContext) -> Any:
    """``{"times": n, "retryable": bool, "message"?: str}``: fails attempts 1..n, then echoes."""
    spec = _mapping(input, "builtin.fail")
    times = spec.get("times", 1)
    if isinstance(times, bool) or not isinstance(times, int) or times < 0:
        raise NonRetryableError(f"builtin.fail: times must be an integer >= 0, got {times!r}")
    if ctx.attempt <= times:
        message = str(
            spec.get("message") or f"builtin.fail: attempt {ctx.attempt} of {times} fails"
        )
        if spec.get("retryable", True):
            raise RetryableError(message)
        raise NonRetryableError(message)
    return input


def builtin_registry(*, http: HttpOptions | None = None) -> TaskRegistry:
    """The built-in task types; ``builtin.http`` calls what ``http`` allows (default:
    public addresses only, the default response cap)."""
    built = TaskRegistry()
    built.register("builtin.echo", echo)
    built.register("builtin.sleep", sleep)
    built.register("builtin.fail", fail)
    built.register("builtin.http", http_task(http or HttpOptions()))
    return built


#: The built-in task types with the default ``builtin.http`` options.
registry = builtin_registry()
