"""Values that slip past the gateway fail their own workflow; everyone else's keep going.

The gateway bounds what comes in (docs/limits.md), but templates multiply it: a 200 KB
input referenced four times rendered a 1.2 MB ``task.execute.v1``, over Kafka's message
limit, and the orchestrator retried that batch forever, for every tenant. And anyone who
can write to Kafka can register a definition the gateway would refuse (a sleep past an
Avro long, a child version past an Avro int). Real orchestrator and worker processes on
real Kafka; outcomes only (terminal statuses and errors), whatever the runtime.
"""

from __future__ import annotations

import uuid

import pytest
from orchestrator_harness import Deployment, EventLog, Service

from foldflow.definitions import Definition
from foldflow.limits import MAX_PAYLOAD_BYTES
from foldflow.schemas.messages import (
    DEFAULT_TENANT,
    DefinitionRegistered,
    WorkflowFailed,
    definition_key,
    dump_json,
)

pytestmark = pytest.mark.usefixtures("orchestrator", "worker")

FINISH_S = 90.0


def _register_raw(deployment: Deployment, name: str, definition: dict[str, object]) -> None:
    """Publish a definition as anyone with write access to Kafka could, unvalidated."""
    key = definition_key(DEFAULT_TENANT, name, 1)
    payload = DefinitionRegistered(name=name, version=1, tenant=DEFAULT_TENANT,
                                   definition_json=dump_json(definition))  # fmt: skip
    deployment.publisher.publish(
        deployment.topology.definitions, deployment._envelope(key, payload), key=key
    )


def _error(events: EventLog, workflow_id: str) -> str:
    failed = [e.payload for e in events.by_workflow[workflow_id]
              if isinstance(e.payload, WorkflowFailed)]  # fmt: skip
    assert failed, events.types(workflow_id)
    return failed[-1].error


def test_an_oversized_rendered_input_fails_its_workflow_and_others_complete(
    deployment: Deployment, events: EventLog, orchestrator: Service
) -> None:
    name = f"t-fourfold-{uuid.uuid4().hex[:6]}"
    deployment.register(
        Definition.from_data({
            "name": name,
            "steps": [
                {"id": "small", "task": "builtin.echo", "input": {"v": 1}},
                {"id": "big", "task": "builtin.echo", "after": ["small"],
                 "input": {k: "${input.blob}" for k in "abcd"}},
            ],
        })
    )  # fmt: skip
    blob = "x" * (MAX_PAYLOAD_BYTES - 50_000)  # ~200 KB: accepted at the door
    before = deployment.start("t-pause", {})
    hostile = deployment.start(name, {"blob": blob})
    after = [deployment.start("t-pause", {}) for _ in range(3)]

    statuses = events.wait_finished([before, hostile, *after], timeout=FINISH_S)

    assert statuses[hostile] == "failed"
    error = _error(events, hostile)
    assert error.startswith("step big failed: the rendered input is") and "256 KiB" in error
    assert {statuses[w] for w in [before, *after]} == {"completed"}
    # the orchestrator is still taking new work after it
    late = deployment.start("t-pause", {})
    assert events.wait_finished([late], timeout=FINISH_S) == {late: "completed"}


@pytest.mark.parametrize(
    "step",
    [
        {"id": "nap", "sleep": "99999999999999d"},  # until = now + sleep overflowed an Avro long
        {"id": "kid", "workflow": "t-child", "version": 2**40},  # overflowed an Avro int
    ],
    ids=["sleep-past-avro-long", "child-version-past-avro-int"],
)
def test_a_definition_written_straight_to_kafka_past_the_bounds_fails_only_its_workflows(
    deployment: Deployment, events: EventLog, step: dict[str, object]
) -> None:
    name = f"t-raw-{uuid.uuid4().hex[:6]}"
    _register_raw(deployment, name, {"name": name, "version": 1, "steps": [step]})
    hostile = deployment.start(name, {}, version=1)
    others = [deployment.start("t-pause", {}) for _ in range(3)]

    statuses = events.wait_finished([hostile, *others], timeout=FINISH_S)

    assert statuses[hostile] == "failed"
    assert f"unknown definition {name} v1" in _error(events, hostile)
    assert {statuses[w] for w in others} == {"completed"}


def test_an_unstorable_input_written_straight_to_kafka_fails_only_its_workflow(
    deployment: Deployment, events: EventLog
) -> None:
    hostile = deployment.start("t-pause", {"x": float("nan"), "y": "a\x00"})  # NaN, \u0000
    others = [deployment.start("t-pause", {}) for _ in range(2)]

    statuses = events.wait_finished([hostile, *others], timeout=FINISH_S)

    assert statuses[hostile] == "failed"
    assert "holds a value no downstream can store at x: NaN" in _error(events, hostile)
    assert {statuses[w] for w in others} == {"completed"}
