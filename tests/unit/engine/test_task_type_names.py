"""A task type names a Kafka topic (``wf.tasks.<type>``): one Kafka refuses must be refused
at registration, not crash the orchestrator's first dispatch."""

from __future__ import annotations

import pytest

from foldflow.definitions import Definition, DefinitionError


@pytest.mark.parametrize("task", ["no such/topic", "a b", "émoji", "x" * 201])
def test_task_types_kafka_cannot_name_are_refused(task: str) -> None:
    with pytest.raises(DefinitionError) as err:
        Definition.from_data({"name": "d", "steps": [{"id": "a", "task": task}]})
    assert err.value.problems[0].path == "steps[0].task"


def test_compensation_task_types_are_checked_too() -> None:
    with pytest.raises(DefinitionError):
        Definition.from_data({"name": "d", "steps": [
            {"id": "a", "task": "ok", "compensate": {"task": "not/ok"}}]})


@pytest.mark.parametrize("task", ["builtin.echo", "payments.charge-v2", "UPPER_case.9"])
def test_topic_safe_task_types_are_accepted(task: str) -> None:
    assert Definition.from_data({"name": "d", "steps": [{"id": "a", "task": task}]})
