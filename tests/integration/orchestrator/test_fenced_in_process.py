"""A fence the orchestrator first meets outside a transactional call (its producer's
poll, or a produce refused as a mere "fatal error") ends its run as fenced, not as a
fatal error: in-process, against the real broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer
from orchestrator_harness import Deployment, delete_private_topics, private_settings

from foldflow.definitions import Definition
from foldflow.kafka import kafka_config
from foldflow.processors.runtime.bootstrap import build
from foldflow.processors.runtime.errors import Fenced
from foldflow.processors.runtime.kafka import transactional_id
from foldflow.processors.runtime.watchdog import Watchdog
from foldflow.settings import Settings

ECHO = {"name": "fence-echo", "steps": [{"id": "a", "task": "builtin.echo", "input": {}}]}


@pytest.fixture
def settings(stack: Settings) -> Iterator[Settings]:
    private = private_settings(stack, partitions=1)
    # one transaction stays open for the whole test: no commit meets the fence first
    yield private.model_copy(update={"orchestrator_commit_interval_ms": 10_000})
    delete_private_topics(private)


def test_a_fence_met_outside_a_transactional_call_ends_the_run_as_fenced(
    settings: Settings,
) -> None:
    deployment = Deployment(settings)
    deployment.register(Definition.from_data(ECHO))
    watchdog = Watchdog()
    orchestrator = build(settings, watchdog=watchdog)
    ended: list[BaseException] = []

    def run() -> None:
        try:
            orchestrator.run()
        except BaseException as exc:
            ended.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    try:
        thread.start()
        deployment.start("fence-echo", {}, workflow_id="before-the-fence")
        deadline = time.monotonic() + 90
        while orchestrator.txn is None or not orchestrator.txn.inputs:  # it decided the start
            assert time.monotonic() < deadline, "the orchestrator never took the start"
            assert thread.is_alive(), ended
            time.sleep(0.05)
        newer = Producer(kafka_config(settings, {"transactional.id": transactional_id(settings)}))
        newer.init_transactions(30)  # bumps the epoch: the open transaction is fenced
        deployment.start("fence-echo", {}, workflow_id="after-the-fence")  # more to produce
        thread.join(60)
        assert not thread.is_alive(), "run() went on after the fence"
        assert len(ended) == 1 and isinstance(ended[0], Fenced), ended
    finally:
        orchestrator.stop()
        thread.join(30)
        watchdog.close()
        deployment.close()
