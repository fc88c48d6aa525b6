"""Task workers: the ``@task`` registry, the consumer-group runtime and the built-in tasks.

Importing this package does not import the runtime (Kafka clients); handler modules only
need :func:`task` and the error types.
"""

from foldflow.workers.registry import (
    NonRetryableError,
    RetryableError,
    TaskContext,
    TaskRegistry,
    default_registry,
    task,
)

__all__ = [
    "NonRetryableError",
    "RetryableError",
    "TaskContext",
    "TaskRegistry",
    "default_registry",
    "task",
]
