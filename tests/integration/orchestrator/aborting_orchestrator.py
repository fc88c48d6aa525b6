"""``foldflow run orchestrator`` whose producer fails the commit of the first transaction
that holds a task result with an abortable error, as a transaction coordinator can (the
loop then really aborts it on the broker, rewinds and decides the inputs again). Run as a
script by ``test_batch_failures.py``.

``TEST_COMMIT_DELAY_S``: that commit takes so long first (and says so: the loop decides
the inputs that come meanwhile); ``TEST_COMMIT_FAILS=0``: it then succeeds.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

import foldflow.processors.runtime.bootstrap as bootstrap
from foldflow.cli.orchestrator import run_orchestrator


class _AbortingProducer(Producer):
    """Fails one commit (after everything of the transaction was produced)."""

    results_topic = ".wf.results"
    failed = False
    holds_result = False

    def send_offsets_to_transaction(self, offsets: Any, *args: Any, **kwargs: Any) -> Any:
        self.holds_result = any(tp.topic.endswith(self.results_topic) for tp in offsets)
        return super().send_offsets_to_transaction(offsets, *args, **kwargs)

    def commit_transaction(self, *args: Any, **kwargs: Any) -> Any:
        if self.holds_result and not _AbortingProducer.failed:
            _AbortingProducer.failed = True
            delay = float(os.environ.get("TEST_COMMIT_DELAY_S", "0"))
            if delay:
                print(f"test: the commit of a transaction with a result takes {delay}s",
                      file=sys.stderr, flush=True)  # fmt: skip
                time.sleep(delay)
            if os.environ.get("TEST_COMMIT_FAILS", "1") == "1":
                print("test: failing the commit of a transaction with a result",
                      file=sys.stderr, flush=True)  # fmt: skip
                raise KafkaException(KafkaError(KafkaError._STATE, "injected abortable failure",
                                                txn_requires_abort=True))  # fmt: skip
            print("test: a slow commit of a transaction with a result", file=sys.stderr,
                  flush=True)  # fmt: skip
        return super().commit_transaction(*args, **kwargs)


bootstrap.Producer = _AbortingProducer  # type: ignore[misc]

if __name__ == "__main__":
    run_orchestrator()
