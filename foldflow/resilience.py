"""Resilience helpers for task handler code, on maintained libraries.

- :func:`retry` — tenacity: exponential backoff with jitter, a bounded number of attempts,
  only on the exception types (or predicate) you name. Works on sync and async functions.
- :func:`circuit_breaker` — aiobreaker: one named breaker per downstream dependency (sync
  and async calls); its state is exported as ``foldflow_circuit_breaker_state{name}``
  (0 closed, 1 half-open, 2 open).
- :func:`with_timeout` — bounds an async call; raises :class:`TimeoutError`.

These are for calls a handler makes *within one attempt*. Retrying a whole task is the
orchestrator's decision (the step's retry policy), not the worker's.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

import tenacity
from aiobreaker import CircuitBreaker, CircuitBreakerError, CircuitBreakerListener
from aiobreaker.state import CircuitBreakerBaseState, CircuitBreakerState

from foldflow.observability.metrics import CIRCUIT_BREAKER_STATE

__all__ = [
    "BREAKER_STATE_VALUES",
    "CircuitBreaker",
    "CircuitBreakerError",
    "circuit_breaker",
    "retry",
    "with_timeout",
]

P = ParamSpec("P")
R = TypeVar("R")

#: The gauge value of each breaker state.
BREAKER_STATE_VALUES: dict[CircuitBreakerState, int] = {
    CircuitBreakerState.CLOSED: 0,
    CircuitBreakerState.HALF_OPEN: 1,
    CircuitBreakerState.OPEN: 2,
}


def retry(
    *,
    attempts: int = 3,
    initial: float = 0.1,
    maximum: float = 5.0,
    multiplier: float = 2.0,
    jitter: float = 0.1,
    on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    when: Callable[[BaseException], bool] | None = None,
    within: float | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Retry the decorated function (sync or async) on transient errors.

    Waits ``initial * multiplier**n`` seconds (capped at ``maximum``) plus up to ``jitter``
    seconds of random jitter between attempts, at most ``attempts`` calls in all. Only
    exceptions of the types ``on`` are retried, and when ``when`` is given only those it
    accepts; anything else, and the last failure, propagates unchanged. With ``within``
    (seconds, e.g. ``ctx.remaining()``) no attempt is started that would begin after it.
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    condition: Any = tenacity.retry_if_exception_type(on)
    if when is not None:
        condition = condition & tenacity.retry_if_exception(when)
    stop: Any = tenacity.stop_after_attempt(attempts)
    if within is not None:
        stop = stop | tenacity.stop_before_delay(within)
    decorator: Callable[[Callable[P, R]], Callable[P, R]] = tenacity.retry(
        stop=stop,
        wait=tenacity.wait_exponential(multiplier=initial, exp_base=multiplier, max=maximum)
        + tenacity.wait_random(0, jitter),
        retry=condition,
        reraise=True,
    )
    return decorator


class _GaugeListener(CircuitBreakerListener):
    """Mirrors a breaker's state into ``foldflow_circuit_breaker_state{name}``."""

    def state_change(
        self, breaker: CircuitBreaker, old: CircuitBreakerBaseState | None, new: Any
    ) -> None:
        _export(breaker.name, new.state)


def _export(name: str, state: CircuitBreakerState) -> None:
    CIRCUIT_BREAKER_STATE.labels(name=name).set(BREAKER_STATE_VALUES[state])


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def circuit_breaker(
    name: str,
    *,
    fail_max: int = 5,
    reset_timeout: float = 30.0,
    exclude: tuple[type[BaseException], ...] = (),
) -> CircuitBreaker:
    """The process-wide breaker called ``name`` (created on first use with these options).

    After ``fail_max`` consecutive failures (exceptions not in ``exclude``) it opens, and
    calls fail fast with :class:`CircuitBreakerError` for ``reset_timeout`` seconds; then
    one trial call is let through (half-open) and closes or reopens it.
    Use it as a decorator (``@breaker``) or with ``await breaker.call_async(fn, ...)`` /
    ``breaker.call(fn, ...)``.
    """
    with _breakers_lock:
        breaker = _breakers.get(name)
        if breaker is None:
            breaker = CircuitBreaker(
                fail_max=fail_max,
                timeout_duration=timedelta(seconds=reset_timeout),
                exclude=list(exclude),
                listeners=[_GaugeListener()],
                name=name,
            )
            _breakers[name] = breaker
            _export(name, breaker.current_state)
        return breaker


def with_timeout(
    seconds: float,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Bound each call of the decorated coroutine function to ``seconds``.

    Raises :class:`TimeoutError` (and cancels the call) when it takes longer. Only async
    functions: a thread cannot be interrupted, so a sync call is bounded by the timeouts
    of the client it uses (e.g. ``httpx.Client(timeout=...)``).
    """
    if seconds <= 0:
        raise ValueError("seconds must be > 0")

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"with_timeout needs an async function, got {fn!r}")

        @functools.wraps(fn)
        async def bounded(*args: P.args, **kwargs: P.kwargs) -> R:
            async with asyncio.timeout(seconds):
                return await fn(*args, **kwargs)

        return bounded

    return decorate
