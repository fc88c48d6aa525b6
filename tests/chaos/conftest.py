"""Fixtures for the chaos tests: a private deployment per test, processes to kill.

The helpers (:mod:`orchestrator_harness`) live with the orchestrator integration tests.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "orchestrator"))

from orchestrator_harness import (
    Deployment,
    EventLog,
    Service,
    delete_private_topics,
    private_settings,
    register_all,
)

from foldflow.settings import Settings

CHAOS_PARTITIONS = 4
#: How much of each service's log a failed chaos test's report shows.
LOG_TAIL_LINES = 80


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed chaos test's report ends with the tail of every log its processes wrote
    (the services' and the projector's, all under ``tmp_path``): a failure on a loaded CI
    machine is then read from its report, not guessed at."""
    report = yield
    tmp = getattr(item, "funcargs", {}).get("tmp_path")
    if report.failed and report.when == "call" and isinstance(tmp, Path):
        for path in sorted(tmp.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            report.sections.append((f"log tail {path.name}", "\n".join(lines)))
    return report


@pytest.fixture
def settings(stack: Settings) -> Iterator[Settings]:
    """The test's private topic set, deleted afterwards."""
    settings = private_settings(stack, partitions=CHAOS_PARTITIONS)
    yield settings
    delete_private_topics(settings)


@pytest.fixture
def deployment(settings: Settings) -> Iterator[Deployment]:
    """Publishes to the test's topics; every shared test definition is registered."""
    d = Deployment(settings)
    register_all(d)
    yield d
    d.close()


@pytest.fixture
def events(settings: Settings) -> Iterator[EventLog]:
    """A reader of the test's ``wf.events``."""
    log = EventLog(settings)
    yield log
    log.close()


@pytest.fixture
def spawn(
    settings: Settings, tmp_path: Path
) -> Iterator[Callable[..., Service]]:
    """Start ``foldflow run <args>`` processes; whatever is still alive is stopped after."""
    started: list[Service] = []

    def make(name: str, *args: str, env: dict[str, str] | None = None) -> Service:
        service = Service(name, settings, tmp_path, args=args, env=env).start()
        started.append(service)
        return service

    yield make
    for service in started:
        if service.proc is not None and service.proc.poll() is None:
            service.stop()
