"""One private deployment per test module: topics, an orchestrator and a worker process.

The orchestrator (``foldflow run orchestrator``) and the worker (``foldflow run worker``)
are real subprocesses shared by the module's tests; each test uses its own workflow ids.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from orchestrator_harness import EXAMPLES, Deployment, EventLog, Service

from foldflow.admin import ensure_topics
from foldflow.definitions import Definition
from foldflow.settings import Settings

STARTUP_S = 90.0

#: Definitions the lifecycle tests use besides the examples.
TEST_DEFINITIONS: list[dict[str, Any]] = [
    {
        "name": "t-pause",
        "steps": [
            {"id": "a", "task": "builtin.echo", "input": {"n": 1}},
            {"id": "nap", "sleep": "1500ms", "after": ["a"]},
            {"id": "b", "task": "builtin.echo", "after": ["nap"], "input": {"n": 2}},
        ],
    },
    {
        "name": "t-wait",
        "steps": [
            {
                "id": "reserve",
                "task": "builtin.echo",
                "input": {"what": "stock"},
                "compensate": {"task": "builtin.echo", "input": {"undo": "stock"}},
            },
            {"id": "gate", "signal": "go", "after": ["reserve"], "timeout": "2m"},
            {"id": "finish", "task": "builtin.echo", "after": ["gate"], "input": {"n": 3}},
        ],
    },
    {
        "name": "t-child",
        "steps": [{"id": "only", "task": "builtin.echo", "input": {"child": "${input.x}"}}],
        "output": "${steps.only.output}",
    },
    {
        "name": "t-parent",
        "steps": [
            {"id": "prep", "task": "builtin.echo", "input": {"x": 7}},
            {"id": "kid", "workflow": "t-child", "after": ["prep"], "input": {"x": 7}},
            {"id": "done", "task": "builtin.echo", "after": ["kid"], "input": {"ok": True}},
        ],
    },
]


def private_settings(stack: Settings, *, partitions: int) -> Settings:
    """Settings with a topic prefix of their own; every topic created."""
    settings = Settings(
        kafka_bootstrap=stack.kafka_bootstrap,
        topic_prefix=f"t-{uuid.uuid4().hex[:8]}.",
        partitions=partitions,
    )
    ensure_topics(settings)
    return settings


def register_all(deployment: Deployment) -> None:
    """Register the examples and the test definitions."""
    for path in sorted(EXAMPLES.glob("*.yaml")):
        deployment.register(Definition.load(path))
    for data in TEST_DEFINITIONS:
        deployment.register(Definition.from_data(data))


@pytest.fixture(scope="module")
def settings(stack: Settings) -> Settings:
    """The module's private topic set (3 partitions)."""
    return private_settings(stack, partitions=3)


@pytest.fixture(scope="module")
def deployment(settings: Settings) -> Iterator[Deployment]:
    """Publishes to the module's topics; every definition is registered."""
    d = Deployment(settings)
    register_all(d)
    yield d
    d.close()


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the subprocesses log."""
    return tmp_path_factory.mktemp("orchestrator-logs")


@pytest.fixture(scope="module")
def orchestrator(settings: Settings, deployment: Deployment, log_dir: Path) -> Iterator[Service]:
    """``foldflow run orchestrator``, ready (its state recovered); must exit 0 on SIGTERM."""
    service = Service("orchestrator", settings, log_dir, args=["orchestrator"]).start()
    service.wait_for_log("recovered \\d+ workflows", timeout=STARTUP_S)
    yield service
    assert service.stop() == 0, service.log_text()[-3000:]


@pytest.fixture(scope="module")
def worker(settings: Settings, log_dir: Path) -> Iterator[Service]:
    """``foldflow run worker`` serving the built-in task types."""
    service = Service("worker", settings, log_dir, args=["worker"]).start()
    yield service
    service.stop()


@pytest.fixture
def events(settings: Settings) -> Iterator[EventLog]:
    """A reader of the module's ``wf.events``."""
    log = EventLog(settings)
    yield log
    log.close()
