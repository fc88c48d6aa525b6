"""The orchestrator on the real broker: examples, lifecycle commands, DLQ, idempotent start.

One orchestrator and one worker process serve the whole module; each test has its own
workflow ids and reads the outcome back from ``wf.events``.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition
from orchestrator_harness import (
    CancelWorkflow,
    Deployment,
    EventLog,
    PauseWorkflow,
    ResumeWorkflow,
    Service,
    SignalWorkflow,
    TerminateWorkflow,
    json_lines,
)
from prometheus_client.parser import text_string_to_metric_families

from foldflow.kafka import kafka_config
from foldflow.producers import producer_config
from foldflow.schemas.codec import encode
from foldflow.schemas.messages import Envelope, StepCompleted, WorkflowCompleted, dump_json
from foldflow.settings import Settings
from foldflow.topics import Topology

WAIT_S = 60.0

pytestmark = pytest.mark.usefixtures("orchestrator", "worker")


def _step_completions(log: EventLog, wf: str) -> list[str]:
    return [
        e.payload.step_id for e in log.by_workflow[wf] if isinstance(e.payload, StepCompleted)
    ]


def _assert_sequences(log: EventLog, wf: str) -> None:
    assert [e.sequence for e in log.by_workflow[wf]] == list(range(1, len(log.by_workflow[wf]) + 1))


def test_every_example_reaches_its_expected_end_state(
    deployment: Deployment, events: EventLog
) -> None:
    flaky = deployment.start("flaky-retry", {"x": 1})
    order = deployment.start("order-fulfilment", {"order_id": "o-1", "amount": 12.5})
    fan_out = deployment.start("fan-out-pipeline", {"dataset": "d1", "enrich": True})
    approval = deployment.start("approval", {"request": "laptop"})
    rejected = deployment.start("approval", {"request": "yacht"})

    events.wait(
        lambda log: "step.waiting.v1" in log.types(approval)
        and "step.waiting.v1" in log.types(rejected),
        timeout=WAIT_S, what="approval steps waiting for their signal",
    )  # fmt: skip
    deployment.command(
        approval, SignalWorkflow("approve", dump_json({"approved": True, "by": "ana"}))
    )
    deployment.command(
        rejected, SignalWorkflow("approve", dump_json({"approved": False, "by": "bo"}))
    )

    statuses = events.wait_finished([flaky, order, fan_out, approval, rejected], timeout=WAIT_S)
    assert statuses == {
        flaky: "completed",
        order: "compensated",
        fan_out: "completed",
        approval: "completed",
        rejected: "completed",
    }
    for wf in (flaky, order, fan_out, approval, rejected):
        _assert_sequences(events, wf)

    # flaky-retry: two failed attempts, each retried after its backoff timer fired
    assert events.types(flaky).count("step.attempt_failed.v1") == 2
    assert _step_completions(events, flaky) == ["flaky", "after_flaky"]
    # the saga undid both completed steps, the shipment never completed
    assert set(_step_completions(events, order)) == {"reserve_stock", "charge_card"}
    assert events.types(order).count("compensation.completed.v1") == 2
    # fan-out: all four task steps and the sleep step completed, load last
    assert _step_completions(events, fan_out)[-1] == "load"
    assert "settle" in _step_completions(events, fan_out)
    # approval: the `when` conditions chose the branch
    assert "carry_out" in _step_completions(events, approval)
    assert "reject" not in _step_completions(events, approval)
    assert "reject" in _step_completions(events, rejected)


def test_unknown_definition_fails_the_workflow(deployment: Deployment, events: EventLog) -> None:
    wf = deployment.start(f"nowhere-{uuid.uuid4().hex[:6]}", {})
    assert events.wait_finished([wf], timeout=WAIT_S) == {wf: "failed"}


def test_definition_registered_after_start_wins_the_race(
    deployment: Deployment, events: EventLog
) -> None:
    from foldflow.definitions import Definition

    name = f"late-{uuid.uuid4().hex[:6]}"
    definition = Definition.from_data(
        {"name": name, "steps": [{"id": "s", "task": "builtin.echo", "input": {}}]}
    )
    deployment.register(definition)  # acked before the start is sent, as a client would
    wf = deployment.start(name, {})
    assert events.wait_finished([wf], timeout=WAIT_S) == {wf: "completed"}


def test_start_is_idempotent(deployment: Deployment, events: EventLog) -> None:
    wf = deployment.start("t-child", {"x": 1})
    deployment.start("t-child", {"x": 2}, workflow_id=wf)
    assert events.wait_finished([wf], timeout=WAIT_S) == {wf: "completed"}
    later = deployment.start("t-child", {"x": 3})  # processed after the duplicate start
    events.wait_finished([later], timeout=WAIT_S)
    assert events.types(wf).count("workflow.started.v1") == 1
    _assert_sequences(events, wf)


def test_child_workflow_runs_and_reports_to_its_parent(
    deployment: Deployment, events: EventLog
) -> None:
    parent = deployment.start("t-parent", {})
    assert events.wait_finished([parent], timeout=WAIT_S) == {parent: "completed"}
    requested = [e for e in events.by_workflow[parent] if e.event_type == "child.requested.v1"]
    assert len(requested) == 1
    child = requested[0].payload.child_workflow_id  # type: ignore[union-attr]
    assert events.wait_finished([child], timeout=WAIT_S) == {child: "completed"}
    assert _step_completions(events, parent) == ["prep", "kid", "done"]


def test_pause_holds_dispatch_until_resume(deployment: Deployment, events: EventLog) -> None:
    wf = deployment.start("t-pause", {})
    events.wait(lambda log: "step.waiting.v1" in log.types(wf), timeout=WAIT_S, what="nap")
    deployment.command(wf, PauseWorkflow("hold"))
    events.wait(lambda log: "workflow.paused.v1" in log.types(wf), timeout=WAIT_S, what="pause")
    time.sleep(2.0)  # the 1.5 s nap ends while paused: step b must still not be dispatched
    deployment.command(wf, ResumeWorkflow("go"))
    assert events.wait_finished([wf], timeout=WAIT_S) == {wf: "completed"}
    types = events.types(wf)
    paused, resumed = types.index("workflow.paused.v1"), types.index("workflow.resumed.v1")
    assert "step.scheduled.v1" not in types[paused:resumed]
    assert _step_completions(events, wf) == ["a", "nap", "b"]
    _assert_sequences(events, wf)


def test_signal_releases_a_waiting_step(deployment: Deployment, events: EventLog) -> None:
    wf = deployment.start("t-wait", {})
    events.wait(lambda log: "step.waiting.v1" in log.types(wf), timeout=WAIT_S, what="gate")
    deployment.command(wf, SignalWorkflow("go", dump_json({"ok": True})))
    assert events.wait_finished([wf], timeout=WAIT_S) == {wf: "completed"}
    assert "signal.received.v1" in events.types(wf)
    assert _step_completions(events, wf) == ["reserve", "gate", "finish"]


def test_cancel_compensates_then_cancels(deployment: Deployment, events: EventLog) -> None:
    wf = deployment.start("t-wait", {})
    events.wait(lambda log: "step.waiting.v1" in log.types(wf), timeout=WAIT_S, what="gate")
    deployment.command(wf, CancelWorkflow("changed my mind"))
    assert events.wait_finished([wf], timeout=WAIT_S) == {wf: "cancelled"}
    types = events.types(wf)
    assert "compensation.completed.v1" in types
    assert types.index("compensation.completed.v1") < types.index("workflow.cancelled.v1")
    assert "finish" not in _step_completions(events, wf)


def test_terminate_stops_at_once(deployment: Deployment, events: EventLog) -> None:
    wf = deployment.start("t-wait", {})
    events.wait(lambda log: "step.waiting.v1" in log.types(wf), timeout=WAIT_S, what="gate")
    deployment.command(wf, TerminateWorkflow("stop"))
    assert events.wait_finished([wf], timeout=WAIT_S) == {wf: "terminated"}
    assert "compensation.scheduled.v1" not in events.types(wf)
    # a command after the end changes nothing
    deployment.command(wf, SignalWorkflow("go"))
    probe = deployment.start("t-child", {"x": 0}, workflow_id=f"{wf}-probe")
    events.wait_finished([probe], timeout=WAIT_S)
    assert events.types(wf)[-1] == "workflow.terminated.v1"


def _dlq_records(settings: Settings, key: bytes, *, count: int) -> list[Message]:
    consumer = Consumer(kafka_config(settings, {
        "group.id": f"test-dlq-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    }))  # fmt: skip
    topic = Topology.of(settings).dlq
    consumer.assign(
        [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.partitions)]
    )
    found: list[Message] = []
    deadline = time.monotonic() + WAIT_S
    try:
        while len(found) < count and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=100, timeout=0.5):
                if msg.error() is None and msg.key() == key:
                    found.append(msg)
    finally:
        consumer.close()
    assert len(found) >= count, f"{len(found)} of {count} DLQ records with key {key!r}"
    return found


def test_poison_messages_go_to_the_dlq_and_processing_continues(
    settings: Settings, deployment: Deployment, events: EventLog
) -> None:
    wf = f"wf-poison-{uuid.uuid4().hex[:8]}"
    commands = deployment.topology.commands
    event = Envelope(
        event_id=str(uuid.uuid4()), timestamp=int(time.time() * 1000), source="test",
        correlation_id="c", workflow_id=wf, payload=WorkflowCompleted(), sequence=1,
    )  # fmt: skip
    raw = Producer(producer_config(settings, source="test"))
    raw.produce(commands, b"not avro", key=wf.encode())  # 1. no Avro at all
    raw.produce(commands, encode(event), key=wf.encode())  # 2. an event, not a command
    assert raw.flush(30) == 0
    # 3. then a good start for the same workflow, on the same partition, behind them
    deployment.start("t-child", {"x": 1}, workflow_id=wf)

    assert events.wait_finished([wf], timeout=WAIT_S) == {wf: "completed"}
    records = _dlq_records(settings, wf.encode(), count=2)
    by_value = {m.value(): dict(m.headers() or []) for m in records}
    not_avro = by_value[b"not avro"]
    assert not_avro["dlq.topic"] == commands.encode()
    assert not_avro["dlq.reason_kind"] == b"NotAvroError"
    assert not_avro["dlq.reason"]
    wrong_kind = by_value[encode(event)]
    assert b"event" in wrong_kind["dlq.reason"]
    assert events.types(wf)[0] == "workflow.started.v1"  # the poison produced no events


def test_orchestrator_logs_are_json_with_workflow_and_trace_ids(
    orchestrator: Service, deployment: Deployment, events: EventLog
) -> None:
    wf = deployment.start(f"nowhere-{uuid.uuid4().hex[:6]}", {})  # logs a warning
    events.wait_finished([wf], timeout=WAIT_S)
    orchestrator.wait_for_log(f'"workflow_id": "{wf}"', timeout=WAIT_S)
    lines = [json.loads(line) for line in json_lines(orchestrator.log_text())]
    required = {"timestamp", "level", "message", "workflow_id", "trace_id"}
    assert all(required <= set(x) for x in lines)
    mine = [x for x in lines if x["workflow_id"] == wf]
    assert mine and all(x["trace_id"] for x in mine)


def _scrape(orchestrator: Service) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    port = orchestrator.extra_env["FOLDFLOW_METRICS_PORT"]
    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
           **labels: str) -> float:  # fmt: skip
    return sum(v for (n, lbl), v in samples.items() if n == name and set(labels.items()) <= lbl)


def test_metrics_count_workflows_messages_and_lag(
    orchestrator: Service, deployment: Deployment, events: EventLog, settings: Settings
) -> None:
    wf = deployment.start("t-child", {"x": 9})
    events.wait_finished([wf], timeout=WAIT_S)
    commands = Topology.of(settings).commands
    deadline = time.monotonic() + WAIT_S
    while True:  # the gauges are refreshed every few seconds
        samples = _scrape(orchestrator)
        if any(n == "foldflow_consumer_lag_messages" and ("topic", commands) in lbl
               for n, lbl in samples):
            break
        assert time.monotonic() < deadline, "no foldflow_consumer_lag_messages sample"
        time.sleep(0.5)
    assert _value(samples, "foldflow_workflows_started_total", definition="t-child") >= 1
    assert _value(
        samples, "foldflow_workflows_finished_total", definition="t-child", status="completed"
    ) >= 1
    assert _value(
        samples, "foldflow_messages_handled_total",
        topic=commands, handler="orchestrator", outcome="ok",
    ) >= 1  # fmt: skip
    assert _value(samples, "foldflow_message_handling_seconds_count", topic=commands) >= 1
    assert ("foldflow_active_workflows", frozenset()) in samples
    assert _value(samples, "foldflow_transaction_commits_total") >= 1
    assert _value(samples, "foldflow_transaction_inputs_count") >= 1
    assert _value(samples, "foldflow_transaction_duration_seconds_count") >= 1
    assert _value(samples, "foldflow_transaction_commit_seconds_count") >= 1


def test_one_trace_follows_the_workflow_through_orchestrator_and_worker(
    deployment: Deployment, events: EventLog
) -> None:
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01".encode()
    wf = deployment.start("t-pause", {}, headers=[("traceparent", traceparent)])
    assert events.wait_finished([wf], timeout=WAIT_S) == {wf: "completed"}
    carried = [h.get("traceparent", b"").decode() for h in events.headers[wf]]
    # every event belongs to the trace the command started: those caused by the worker's
    # results (via the ExecuteTask headers) and those caused by the sleep step's timer
    assert [c.split("-")[1] if c else None for c in carried] == [trace_id] * len(carried)


#: Each amplifies a 400 kB input threefold into one task command: 1.2 MB, over the 1 MB
#: record limit, while the start (and the state holding the input) still fit.
BIG = {
    "name": "t-big",
    "steps": [{"id": "big", "task": "builtin.echo",
               "input": {"a": "${input.blob}", "b": "${input.blob}", "c": "${input.blob}"}}],
}

def test_an_input_past_the_bounds_fails_only_its_workflow(
    deployment: Deployment, events: EventLog
) -> None:
    from foldflow.definitions import Definition

    # A step input rendered past its bound (300 KB of 256 KiB) fails that workflow alone.
    # An output over the producer's record limit, or a value Avro cannot hold, can no longer
    # come from a definition the door accepts; the unit tests of the input handler cover it.
    deployment.register(Definition.from_data(BIG))
    before = [deployment.start("t-child", {"x": i}) for i in range(3)]
    big = deployment.start("t-big", {"blob": "x" * 100_000})
    after = [deployment.start("t-child", {"x": i}) for i in range(3)]

    statuses = events.wait_finished([*before, big, *after], timeout=WAIT_S)
    assert statuses == {**dict.fromkeys(before + after, "completed"), big: "failed"}
    big_error = events.by_workflow[big][-1].payload.error  # type: ignore[union-attr]
    assert "big" in big_error, big_error
    _assert_sequences(events, big)
    assert "step.scheduled.v1" not in events.types(big)  # nothing half-done was produced
