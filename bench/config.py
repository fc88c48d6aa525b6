"""What a benchmark run is asked to do (every field is a ``foldflow bench`` option)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TASK_TYPE", "BenchConfig", "BenchError"]

#: The no-op task every bench step runs (a built-in, so no user code is needed).
TASK_TYPE = "builtin.echo"


class BenchError(RuntimeError):
    """The run could not be carried out (a service did not start, nothing completed...)."""


@dataclass(frozen=True)
class BenchConfig:
    """What to run; every field is a ``foldflow bench`` option."""

    steps: int = 3
    concurrency: int = 200
    duration: float = 30.0
    total: int | None = None
    latency_duration: float = 30.0
    latency_rate: float | None = None
    warmup: float = 3.0
    warm_up_load: float = 20.0
    workers: int = 1
    worker_concurrency: int = 32
    baseline_messages: int = 100_000
    profile: bool = False
    profile_seconds: float = 8.0
    keep_topics: bool = False
    log_level: str | None = None
    poll_interval: float = 0.02
    drain_timeout: float = 60.0
    alone_workflows: int = 100_000
