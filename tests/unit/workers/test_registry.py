"""The @task registry."""

from __future__ import annotations

import time

import pytest

from foldflow.workers.registry import (
    DuplicateTaskError,
    TaskContext,
    TaskRegistry,
    default_registry,
    task,
)


def test_task_registers_sync_and_async_handlers_in_an_explicit_registry() -> None:
    registry = TaskRegistry()

    @task("payment.charge", registry=registry)
    def charge(input: object, ctx: TaskContext) -> object:
        return input

    @task("payment.refund", registry=registry)
    async def refund(input: object, ctx: TaskContext) -> object:
        return input

    charge_spec, refund_spec = registry.get("payment.charge"), registry.get("payment.refund")
    assert charge_spec is not None and charge_spec.handler is charge
    assert not charge_spec.is_async
    assert refund_spec is not None and refund_spec.is_async
    assert registry.types() == ("payment.charge", "payment.refund")
    assert "payment.charge" in registry and "payment.other" not in registry
    assert "payment.charge" not in default_registry


def test_a_second_handler_for_a_type_is_refused() -> None:
    registry = TaskRegistry()
    registry.register("t", lambda i, c: i)
    with pytest.raises(DuplicateTaskError, match="already registered"):
        registry.register("t", lambda i, c: None)


def test_registering_the_same_handler_twice_is_idempotent() -> None:
    registry = TaskRegistry()

    def handler(i: object, c: TaskContext) -> object:
        return i

    registry.register("t", handler)
    registry.register("t", handler)  # a module imported twice
    assert len(registry) == 1


@pytest.mark.parametrize("bad", ["", " padded ", "trailing "])
def test_invalid_task_types_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid task type"):
        TaskRegistry().register(bad, lambda i, c: i)


def test_merged_registry_has_both_and_the_other_wins() -> None:
    a, b = TaskRegistry(), TaskRegistry()

    def one(i: object, c: TaskContext) -> int:
        return 1

    def two(i: object, c: TaskContext) -> int:
        return 2

    a.register("x", one)
    a.register("only.a", one)
    b.register("x", two)
    merged = a.merged(b)
    spec = merged.get("x")
    assert spec is not None and spec.handler is two
    assert merged.types() == ("only.a", "x")
    assert a.get("x") is not None and a.get("x").handler is one  # type: ignore[union-attr]


def test_context_remaining_time() -> None:
    ctx = TaskContext("t", "wf", "s", 1, "step", deadline=time.time() + 60)
    remaining = ctx.remaining()
    assert remaining is not None and 0 < remaining <= 60
    assert TaskContext("t", "wf", "s", 1, "step", deadline=time.time() - 5).remaining() == 0.0
    assert TaskContext("t", "wf", "s", 1, "step", deadline=None).remaining() is None
