"""A real worker against the real broker: results, failures, timeouts, poison messages,
in-order commits and bounded concurrency."""

from __future__ import annotations

import json
import logging
import time

from confluent_kafka import Producer
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import REGISTRY

from foldflow.kafka import kafka_config
from foldflow.schemas.messages import ExecuteTask, TaskFailed, TaskSucceeded, derived_id

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_echo_answers_with_task_succeeded_on_results(send, results, start_worker):
    start_worker()
    command = send(
        "builtin.echo",
        {"amount": 42, "currency": "EUR"},
        headers=[("traceparent", TRACEPARENT.encode())],
    )

    [result] = results.envelopes(1)

    task = command.payload
    assert isinstance(task, ExecuteTask)
    assert isinstance(result.payload, TaskSucceeded)
    assert result.payload.task_id == task.task_id
    assert result.payload.step_id == task.step_id
    assert result.payload.attempt == 1
    assert result.payload.kind == "step"
    assert json.loads(result.payload.output_json) == {"amount": 42, "currency": "EUR"}
    assert result.workflow_id == command.workflow_id
    assert result.correlation_id == command.correlation_id
    assert result.causation_id == command.event_id
    assert result.event_id == derived_id(command.event_id, 0)
    assert result.source == "worker"
    msg = results.messages[0]
    assert msg.key() == command.workflow_id.encode()
    headers = dict(msg.headers() or [])
    assert headers["event_type"] == b"task.succeeded.v1"
    carried = TraceContextTextMapPropagator().extract(
        {"traceparent": headers["traceparent"].decode()}
    )
    span_context = trace.get_current_span(carried).get_span_context()
    assert format(span_context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"


def attempts(outcome: str) -> float:
    labels = {"task_type": "builtin.fail", "outcome": outcome}
    return REGISTRY.get_sample_value("foldflow_step_attempts_total", labels) or 0.0


def test_fail_once_then_succeed(send, results, start_worker, caplog):
    caplog.set_level(logging.INFO, logger="foldflow.worker")
    before = attempts("failed"), attempts("succeeded")
    start_worker()
    wf = "wf-fail-once"
    send("builtin.fail", {"times": 1, "retryable": True}, attempt=1, workflow_id=wf)
    send("builtin.fail", {"times": 1, "retryable": True}, attempt=2, workflow_id=wf)

    first, second = (e.payload for e in results.envelopes(2))

    assert isinstance(first, TaskFailed)
    assert (first.attempt, first.retryable) == (1, True)
    assert "attempt 1" in first.error
    assert isinstance(second, TaskSucceeded)
    assert second.attempt == 2
    assert json.loads(second.output_json) == {"times": 1, "retryable": True}
    assert (attempts("failed"), attempts("succeeded")) == (before[0] + 1, before[1] + 1)
    # A failed attempt is an INFO line with its error; a success is only a DEBUG line.
    outcomes = [r for r in caplog.records
                if r.name == "foldflow.worker" and r.msg == "task %s"]
    assert [(r.levelno, r.args) for r in outcomes] == [(logging.INFO, ("failed",))]
    assert "attempt 1" in outcomes[0].error


def test_non_retryable_failure_is_reported_as_such(send, results, start_worker):
    start_worker()
    send("builtin.fail", {"times": 3, "retryable": False, "message": "card declined"})

    [result] = results.envelopes(1)

    assert isinstance(result.payload, TaskFailed)
    assert result.payload.retryable is False
    assert result.payload.error == "card declined"


def test_attempt_timeout_gives_retryable_failure(send, results, start_worker):
    start_worker()
    send("builtin.sleep", {"seconds": 30}, timeout_ms=300)

    [result] = results.envelopes(1)

    assert isinstance(result.payload, TaskFailed)
    assert result.payload.retryable is True
    assert result.payload.timed_out is True  # the same as when the orchestrator notices
    assert result.payload.error == "timed out after 300 ms"


def test_an_output_no_message_can_carry_fails_the_attempt_for_good(send, results, start_worker):
    """A result over Kafka's message size was retried forever, holding its partition."""
    start_worker(task_types=("test.big", "builtin.echo"))
    send("test.big", {"bytes": 2_000_000})
    send("test.big", {"bytes": 10})

    outcomes = results.envelopes(2)

    failed = [r.payload for r in outcomes if isinstance(r.payload, TaskFailed)]
    assert len(failed) == 1 and failed[0].retryable is False
    assert "over the 262144-byte limit" in failed[0].error
    assert any(isinstance(r.payload, TaskSucceeded) for r in outcomes)


def test_poison_message_goes_to_dlq_and_the_next_one_is_processed(
    committed_offsets, settings, publisher, topology, send, results, dlq, start_worker
):
    wf = "wf-poison"
    # Same key as the next command, so both land on one partition, poison first.
    raw = Producer(kafka_config(settings, {"partitioner": "murmur2_random"}))
    raw.produce(topology.task("builtin.echo"), b"garbage!", wf.encode())
    assert raw.flush(10) == 0
    command = send("builtin.echo", {"n": 1}, workflow_id=wf)
    worker = start_worker()

    [dead] = dlq.read(1)
    [result] = results.envelopes(1)

    assert dead.value() == b"garbage!"
    headers = dict(dead.headers() or [])
    assert b"C3 01" in headers["dlq.reason"]
    assert headers["dlq.reason_kind"] == b"NotAvroError"
    assert headers["dlq.topic"] == topology.task("builtin.echo").encode()
    assert result.causation_id == command.event_id
    worker.stop()
    # Both records are committed: nothing is redelivered to the group.
    assert sum(o for o in committed_offsets("builtin.echo").values() if o >= 0) == 2


def test_unknown_task_type_goes_to_dlq(send, dlq, results, start_worker):
    start_worker()
    send("no.such.type", {"x": 1}, topic_type="builtin.echo")
    command = send("builtin.echo", {"x": 2})

    [dead] = dlq.read(1)
    headers = dict(dead.headers() or [])
    assert b"unknown task type 'no.such.type'" in headers["dlq.reason"]
    assert headers["dlq.reason_kind"] == b"UnknownTaskType"
    result = results.where(lambda e: e.causation_id == command.event_id)
    assert result is not None and isinstance(result.payload, TaskSucceeded)


def test_commit_never_passes_an_unfinished_message(
    committed_offsets, settings, send, results, start_worker
):
    worker = start_worker(task_types=["test.slow"], concurrency=4)
    wf = "wf-order"  # one key: one partition, slow command first
    slow = send("test.slow", {"seconds": 4}, workflow_id=wf, step_id="slow")
    fast = send("test.slow", {"seconds": 0}, workflow_id=wf, step_id="fast")

    first = results.where(lambda e: e.causation_id == fast.event_id)
    assert first is not None
    # The fast one is done, the slow one (earlier offset) is not: nothing may be committed.
    assert all(o < 0 for o in committed_offsets("test.slow").values())

    second = results.where(lambda e: e.causation_id == slow.event_id)
    assert second is not None
    worker.stop()
    assert sorted(committed_offsets("test.slow").values())[-1] == 2


def test_concurrency_is_bounded(send, results, start_worker, test_registry):
    start_worker(task_types=["test.slow"], concurrency=3)
    for i in range(9):
        send("test.slow", {"seconds": 0.3}, step_id=f"s{i}")

    envelopes = results.envelopes(9)

    assert len(envelopes) == 9
    assert len({e.causation_id for e in envelopes}) == 9
    assert all(isinstance(e.payload, TaskSucceeded) for e in envelopes)
    assert test_registry.concurrency_state["max"] <= 3


def test_two_workers_share_the_group_and_every_command_is_answered(send, results, start_worker):
    first = start_worker(task_types=["builtin.echo"])
    sent = [send("builtin.echo", {"i": i}) for i in range(5)]
    start_worker(task_types=["builtin.echo"])  # joins: the group rebalances
    sent += [send("builtin.echo", {"i": i}) for i in range(5, 10)]
    first.stop()  # leaves: the other worker takes every partition
    sent += [send("builtin.echo", {"i": i}) for i in range(10, 15)]

    wanted = {c.event_id for c in sent}
    answered: set[str] = set()
    while answered != wanted:
        found = results.where(lambda e: e.causation_id in wanted - answered)
        assert found is not None, f"unanswered: {len(wanted - answered)}"
        answered.add(found.causation_id or "")


def test_consumer_lag_is_exported_per_group_and_partition(topology, send, results, start_worker):
    start_worker(task_types=["builtin.echo"])
    send("builtin.echo", {"lag": True})
    assert len(results.envelopes(1)) == 1
    labels = {
        "group": topology.worker_group("builtin.echo"),
        "topic": topology.task("builtin.echo"),
    }

    def lag() -> list[float | None]:
        return [
            REGISTRY.get_sample_value("foldflow_consumer_lag_messages",
                                      {**labels, "partition": str(p)})
            for p in (0, 1)
        ]

    deadline = time.monotonic() + 30  # reported every few seconds while polling
    while None in lag() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lag() == [0.0, 0.0]
