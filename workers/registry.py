"""The task registry: ``@task("payment.charge")`` maps a task type to its handler.

A handler is ``handler(input, ctx) -> output``, sync or ``async``. ``input`` is the step's
input as decoded JSON, ``ctx`` a :class:`TaskContext`; the return value must be
JSON-serialisable and becomes the step's output. Raise :class:`NonRetryableError` for a
failure another attempt cannot fix, :class:`RetryableError` (or any other exception) for
one it might; the orchestrator decides whether and when to retry.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "DuplicateTaskError",
    "Handler",
    "NonRetryableError",
    "RetryableError",
    "TaskContext",
    "TaskRegistry",
    "TaskSpec",
    "default_registry",
    "task",
]

Handler = Callable[[Any, "TaskContext"], Any] | Callable[[Any, "TaskContext"], Awaitable[Any]]
H = TypeVar("H", bound=Callable[..., Any])


class RetryableError(Exception):
    """The attempt failed, but another attempt may succeed (a transient failure)."""


class NonRetryableError(Exception):
    """The attempt failed and no other attempt will succeed (bad input, a 4xx, a refusal)."""


class DuplicateTaskError(ValueError):
    """A task type was registered twice in one registry."""


@dataclass(frozen=True)
class TaskContext:
    """What a handler knows about the attempt it runs.

    ``task_id`` is deterministic per (workflow, step, attempt, kind): use it as the
    idempotency key towards downstream services. ``deadline`` is the wall-clock time
    (seconds since the epoch) at which the worker gives up on the attempt, or None.
    """

    task_id: str
    workflow_id: str
    step_id: str
    attempt: int
    kind: str
    deadline: float | None
    task_type: str = ""
    correlation_id: str = ""

    def remaining(self) -> float | None:
        """Seconds left before the deadline (never negative), or None without a deadline."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.time())


@dataclass(frozen=True)
class TaskSpec:
    """One registered task type."""

    task_type: str
    handler: Handler
    is_async: bool


class TaskRegistry:
    """Task type → handler. The module-level :data:`default_registry` is what ``@task`` fills."""

    def __init__(self) -> None:
        self._specs: dict[str, TaskSpec] = {}

    def register(self, task_type: str, handler: Handler, *, replace: bool = False) -> TaskSpec:
        """Register ``handler`` for ``task_type``; refuses a second one unless ``replace``."""
        if not task_type or task_type != task_type.strip():
            raise ValueError(f"invalid task type {task_type!r}")
        existing = self._specs.get(task_type)
        if existing is not None and not replace and existing.handler is not handler:
            raise DuplicateTaskError(
                f"task type {task_type!r} is already registered to {_name(existing.handler)}"
            )
        spec = TaskSpec(task_type, handler, inspect.iscoroutinefunction(handler))
        self._specs[task_type] = spec
        return spec

    def task(self, task_type: str, *, replace: bool = False) -> Callable[[H], H]:
        """Decorator form of :meth:`register`; returns the handler unchanged."""

        def decorate(handler: H) -> H:
            self.register(task_type, handler, replace=replace)
            return handler

        return decorate

    def get(self, task_type: str) -> TaskSpec | None:
        """The spec of ``task_type``, or None when nothing serves it."""
        return self._specs.get(task_type)

    def __contains__(self, task_type: object) -> bool:
        return task_type in self._specs

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._specs))

    def __len__(self) -> int:
        return len(self._specs)

    def types(self) -> tuple[str, ...]:
        """Every registered task type, sorted."""
        return tuple(sorted(self._specs))

    def merged(self, other: TaskRegistry) -> TaskRegistry:
        """A new registry with this one's tasks plus ``other``'s (``other`` wins on a clash)."""
        merged = TaskRegistry()
        merged._specs = {**self._specs, **other._specs}
        return merged


def _name(handler: Callable[..., Any]) -> str:
    return f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', handler)}"


#: The registry ``@task`` registers into; ``foldflow run worker --module`` imports modules
#: whose decorators fill it.
default_registry = TaskRegistry()


def task(task_type: str, *, registry: TaskRegistry | None = None) -> Callable[[H], H]:
    """Register the decorated function as the handler of ``task_type``.

    >>> @task("payment.charge")
    ... async def charge(input, ctx): ...
    """
    target = default_registry if registry is None else registry
    return target.task(task_type)
