"""``foldflow run orchestrator`` whose producer stamps every record it produces and can
SIGKILL its own process at a chosen point of the transaction cycle. Run as a script by
the chaos tests.

* header ``test.stamp`` = ``<instance id>:<unix time of the produce call>`` on every record,
  so a test can tell which instance wrote a record, and when;
* ``TEST_KILL_POINT`` (``begin``, ``produce``, ``offsets``, ``commit``, ``committed``) and
  ``TEST_KILL_AT`` (n): SIGKILL at the n-th time that point is reached. ``begin``: right
  after a transaction began; ``produce``: before a record is handed to librdkafka;
  ``offsets``: after the input offsets were added to the transaction; ``commit``: while
  the commit is in flight (a timer fires a few ms into ``commit_transaction``);
  ``committed``: after the broker committed, before the in-memory store was updated;
* a line ``test: producing again after <s>s`` when a produce comes after a long pause
  (the process was stopped).
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from typing import Any

from confluent_kafka import Producer

import foldflow.processors.runtime.bootstrap as bootstrap
from foldflow.cli.orchestrator import run_orchestrator

INSTANCE = os.environ.get("FOLDFLOW_INSTANCE_ID", "?")
POINT = os.environ.get("TEST_KILL_POINT") or None
AT = int(os.environ.get("TEST_KILL_AT", "0") or 0)
_reached: dict[str, int] = {}
_last_produce = [time.time()]


def _die(point: str) -> None:
    print(f"test: SIGKILL at {point} #{_reached[point]}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def _reach(point: str) -> bool:
    """Whether this is the n-th time ``point`` is reached and the process must die."""
    if point != POINT:
        return False
    _reached[point] = _reached.get(point, 0) + 1
    return _reached[point] == AT


class _MarkedProducer(Producer):
    def produce(self, topic: str, value: Any = None, key: Any = None, *args: Any,
                **kwargs: Any) -> Any:  # fmt: skip
        now = time.time()
        if now - _last_produce[0] > 5.0:
            print(f"test: producing again after {now - _last_produce[0]:.1f}s", file=sys.stderr,
                  flush=True)  # fmt: skip
        _last_produce[0] = now
        headers = list(kwargs.pop("headers", None) or [])
        headers.append(("test.stamp", f"{INSTANCE}:{now:.3f}".encode()))
        if _reach("produce"):
            _die("produce")
        return super().produce(topic, value, key, *args, headers=headers, **kwargs)

    def begin_transaction(self, *args: Any, **kwargs: Any) -> Any:
        result = super().begin_transaction(*args, **kwargs)
        if _reach("begin"):
            _die("begin")
        return result

    def send_offsets_to_transaction(self, *args: Any, **kwargs: Any) -> Any:
        result = super().send_offsets_to_transaction(*args, **kwargs)
        if _reach("offsets"):
            _die("offsets")
        return result

    def commit_transaction(self, *args: Any, **kwargs: Any) -> Any:
        if _reach("commit"):
            threading.Timer(random.uniform(0.001, 0.010), _die, args=("commit",)).start()
        result = super().commit_transaction(*args, **kwargs)
        if _reach("committed"):
            _die("committed")
        return result


bootstrap.Producer = _MarkedProducer  # type: ignore[misc]

if __name__ == "__main__":
    run_orchestrator()
