"""The per-client rate limiter (GCRA over the ``limits`` notation), on a made-up clock."""

from __future__ import annotations

import limits
import pytest

from foldflow.gateway.ratelimit import CellRateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(rate: str, clock: Clock) -> CellRateLimiter:
    return CellRateLimiter(limits.parse_many(rate), clock=clock)


def test_an_idle_client_may_send_the_whole_amount_at_once_then_waits() -> None:
    clock = Clock()
    per_second = limiter("4/second", clock)
    assert [per_second.hit("a") for _ in range(4)] == [None] * 4
    refused = per_second.hit("a")
    assert refused is not None
    item, wait_s = refused
    assert str(item) == "4 per 1 second" and wait_s == pytest.approx(0.25)
    assert per_second.hit("b") is None  # each client its own budget
    clock.now += 0.25
    assert per_second.hit("a") is None  # one interval later, one more
    assert per_second.hit("a") is not None


def test_a_steady_client_at_the_rate_is_never_refused() -> None:
    clock = Clock()
    per_second = limiter("100/second", clock)
    for _ in range(1000):
        assert per_second.hit("a") is None
        clock.now += 0.01


def test_every_part_of_the_rate_applies_and_a_refusal_costs_nothing() -> None:
    clock = Clock()
    both = limiter("2/second;3/minute", clock)
    assert [both.hit("a") is None for _ in range(3)] == [True, True, False]  # 2/second
    clock.now += 1
    assert both.hit("a") is None  # the third of the minute
    clock.now += 1
    refused = both.hit("a")
    assert refused is not None and str(refused[0]) == "3 per 1 minute"
    assert refused[1] == pytest.approx(18.0)  # a slot frees every 20 s: the next at t=20


def test_forgotten_clients_are_swept() -> None:
    clock = Clock()
    per_second = limiter("10/second", clock)
    for i in range(5000):
        per_second.hit(f"ip:{i}")
    clock.now += 2
    for _ in range(5000):  # the sweep runs every 4096 hits
        per_second.hit("steady")
        clock.now += 0.0001
    assert len(per_second) == 1
