"""foldflow.resilience: retry (tenacity), circuit breaker (aiobreaker), timeouts."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from prometheus_client import REGISTRY

from foldflow.resilience import CircuitBreakerError, circuit_breaker, retry, with_timeout


class Transient(Exception):
    pass


def test_retry_retries_the_named_exceptions_then_succeeds() -> None:
    calls: list[float] = []

    @retry(attempts=4, initial=0.01, maximum=0.05, jitter=0.01, on=Transient)
    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise Transient()
        return "ok"

    assert flaky() == "ok"
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.01  # it waited (backoff), at least the initial wait


def test_retry_gives_up_after_max_attempts_and_reraises() -> None:
    calls = 0

    @retry(attempts=3, initial=0.001, jitter=0, on=Transient)
    def always() -> None:
        nonlocal calls
        calls += 1
        raise Transient("still down")

    with pytest.raises(Transient, match="still down"):
        always()
    assert calls == 3


def test_retry_does_not_retry_other_exceptions_or_refused_ones() -> None:
    calls = 0

    @retry(attempts=5, initial=0.001, on=Transient, when=lambda e: "retry" in str(e))
    def fn(message: str) -> None:
        nonlocal calls
        calls += 1
        raise Transient(message)

    with pytest.raises(Transient):
        fn("fatal")
    assert calls == 1

    @retry(attempts=5, initial=0.001, on=Transient)
    def other() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bug")

    with pytest.raises(ValueError):
        other()
    assert calls == 2


def test_retry_within_stops_starting_attempts_after_the_time_budget() -> None:
    calls = 0

    @retry(attempts=100, initial=0.05, maximum=0.05, jitter=0, on=Transient, within=0.01)
    def always() -> None:
        nonlocal calls
        calls += 1
        raise Transient()

    with pytest.raises(Transient):
        always()
    assert calls == 1  # the next attempt would start after the budget


async def test_retry_works_on_coroutines() -> None:
    calls = 0

    @retry(attempts=3, initial=0.001, on=Transient)
    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Transient()
        return calls

    assert await flaky() == 2


def gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value("foldflow_circuit_breaker_state", {"name": name})


async def test_breaker_opens_after_fail_max_fails_fast_then_half_opens_and_closes() -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    breaker = circuit_breaker(name, fail_max=2, reset_timeout=0.2)
    assert circuit_breaker(name) is breaker
    assert gauge(name) == 0

    async def boom() -> None:
        raise Transient("down")

    async def fine() -> str:
        return "up"

    with pytest.raises(Transient):
        await breaker.call_async(boom)
    with pytest.raises(CircuitBreakerError):  # the second failure trips it
        await breaker.call_async(boom)
    assert gauge(name) == 2

    calls = 0

    async def counted() -> str:
        nonlocal calls
        calls += 1
        return "up"

    with pytest.raises(CircuitBreakerError):
        await breaker.call_async(counted)
    assert calls == 0  # open: the call never happened

    await asyncio.sleep(0.25)
    assert await breaker.call_async(fine) == "up"  # trial call (half-open) succeeds
    assert gauge(name) == 0


def test_breaker_excluded_exceptions_do_not_count() -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    breaker = circuit_breaker(name, fail_max=1, exclude=(KeyError,))

    def business() -> None:
        raise KeyError("not found")

    for _ in range(3):
        with pytest.raises(KeyError):
            breaker.call(business)
    assert gauge(name) == 0


async def test_with_timeout_bounds_coroutines() -> None:
    @with_timeout(0.05)
    async def slow() -> None:
        await asyncio.sleep(5)

    @with_timeout(1)
    async def quick() -> int:
        return 7

    with pytest.raises(TimeoutError):
        await slow()
    assert await quick() == 7


def test_with_timeout_refuses_sync_functions_and_bad_bounds() -> None:
    with pytest.raises(TypeError):
        with_timeout(1)(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        with_timeout(0)
