"""One private deployment per test module: topics, an orchestrator and a worker process.

The orchestrator (``foldflow run orchestrator``) and the worker (``foldflow run worker``)
are real subprocesses shared by the module's tests; each test uses its own workflow ids.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from orchestrator_harness import (
    STARTUP_S,
    Deployment,
    EventLog,
    Service,
    delete_private_topics,
    json_lines,
    private_settings,
    register_all,
)

from foldflow.settings import Settings


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def settings(stack: Settings) -> Iterator[Settings]:
    """The module's private topic set (3 partitions), deleted afterwards."""
    settings = private_settings(stack, partitions=3)
    yield settings
    delete_private_topics(settings)


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
    env = {"FOLDFLOW_METRICS_PORT": str(free_port())}
    service = Service("orchestrator", settings, log_dir, args=["orchestrator"], env=env).start()
    service.wait_for_log("recovered \\d+ workflows", timeout=STARTUP_S)
    yield service
    assert service.stop() == 0, service.log_text()[-3000:]
    for line in json_lines(service.log_text()):  # from start to exit: one JSON object a line
        assert json.loads(line), line


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
