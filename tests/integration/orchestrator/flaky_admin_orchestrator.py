"""``foldflow run orchestrator`` whose first task-topic check fails like a broker admin
timeout, as it can on a loaded broker. Run as a script by ``test_batch_failures.py``."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException

import foldflow.processors.runtime.bootstrap as bootstrap
from foldflow.cli.orchestrator import run_orchestrator

_real_ensure_topics = bootstrap.ensure_topics
_calls = 0


def _flaky_ensure_topics(*args: Any, **kwargs: Any) -> Any:
    global _calls
    _calls += 1
    if _calls == 1:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "injected admin timeout"))
    return _real_ensure_topics(*args, **kwargs)


bootstrap.ensure_topics = _flaky_ensure_topics  # type: ignore[attr-defined]

if __name__ == "__main__":
    run_orchestrator()
