"""The orchestrator's metrics: the consumer-lag gauge, lost attempts (default registry)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from foldflow.processors.decider.plan import Plan
from foldflow.processors.decider.state import WorkflowState
from foldflow.processors.runtime.telemetry import LagGauge, TaskTypes, record_plan
from foldflow.schemas.messages import Envelope, StepAttemptFailed


def _lag(group: str, topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        "foldflow_consumer_lag_messages",
        {"group": group, "topic": topic, "partition": str(partition)},
    )


def test_lag_is_log_end_minus_next_offset_and_revoked_partitions_lose_their_label() -> None:
    gauge = LagGauge("g-test-lag")
    ends = {("cmd", 0): 10, ("cmd", 1): 5, ("res", 0): None}
    gauge.publish([("cmd", 0, 7), ("cmd", 1, 5), ("res", 0, 0)],
                  lambda topic, partition: ends[(topic, partition)])  # fmt: skip
    assert _lag("g-test-lag", "cmd", 0) == 3
    assert _lag("g-test-lag", "cmd", 1) == 0
    assert _lag("g-test-lag", "res", 0) is None  # no log end known yet: no sample
    gauge.publish([("cmd", 1, 5)], lambda topic, partition: 9)
    assert _lag("g-test-lag", "cmd", 0) is None
    assert _lag("g-test-lag", "cmd", 1) == 4


def _lost(task_type: str) -> float:
    value = REGISTRY.get_sample_value(
        "foldflow_step_attempts_total", {"task_type": task_type, "outcome": "lost"}
    )
    return value or 0.0


def test_only_a_timeout_nobody_reported_counts_as_lost() -> None:
    """A worker that reports its own timeout counted it (outcome timed_out); the
    orchestrator counts ``lost`` only for the attempts whose timer fired first."""
    task_types = TaskTypes()

    def plan(task_id: str, input_type: str) -> Plan:
        task_types.scheduled(task_id, "t.lost-test")
        failed = StepAttemptFailed("a", 1, task_id, "timed out", True, timed_out=True)
        event = Envelope(event_id=task_id, timestamp=0, source="orchestrator",
                         correlation_id="c", workflow_id="wf", payload=failed, sequence=3)
        return Plan(events=(event,), messages=(), state=WorkflowState(workflow_id="wf"),
                    input_type=input_type)

    record_plan(plan("wf:a:run:1", "task.failed.v1"), task_types)
    assert _lost("t.lost-test") == 0
    record_plan(plan("wf:a:run:2", "timer.fire.v1"), task_types)
    assert _lost("t.lost-test") == 1
