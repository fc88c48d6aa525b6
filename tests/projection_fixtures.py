"""Pytest fixtures shared by the projection integration and chaos tests.

Imported by ``tests/integration/projections/conftest.py`` and
``tests/chaos/projections/conftest.py``: a private migrated database for the session,
private topics per test, a publisher, and a real projector (a thread or a process).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
from confluent_kafka import Message
from confluent_kafka.admin import AdminClient
from projection_support import reset_tables, scratch_database
from sqlalchemy import Engine

from foldflow.admin import ensure_topics
from foldflow.producers import Publisher
from foldflow.projections.db import make_engine, upgrade
from foldflow.projections.projector import Projector, ProjectorOptions
from foldflow.settings import Settings
from foldflow.topics import topic_specs

RunProjector = Callable[..., contextlib.AbstractContextManager[Projector]]


@pytest.fixture(scope="session")
def projection_db(database_url: str) -> Iterator[str]:
    """A migrated database of its own for this test session."""
    with scratch_database(database_url) as url:
        upgrade(url)
        yield url


@pytest.fixture
def engine(projection_db: str) -> Iterator[Engine]:
    """An engine on the session database, its projection tables emptied."""
    eng = make_engine(projection_db)
    reset_tables(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def settings(stack: Settings, projection_db: str, admin: AdminClient) -> Iterator[Settings]:
    """Settings with a topic prefix of this test alone (its topics created, then deleted)."""
    s = stack.model_copy(update={
        "topic_prefix": f"t-{uuid.uuid4().hex[:8]}.",
        "database_url": projection_db,
        "partitions": 3,
    })
    ensure_topics(s, task_types=())
    yield s
    admin.delete_topics([spec.name for spec in topic_specs(s)], operation_timeout=30)


@pytest.fixture
def publisher(settings: Settings) -> Iterator[Publisher]:
    """A publisher on the test's topics (events carry source=orchestrator)."""
    with Publisher(settings, source="orchestrator") as pub:
        yield pub


@pytest.fixture
def run_projector(settings: Settings, engine: Engine) -> Iterator[RunProjector]:
    """``with run_projector() as p:`` runs a real projector in a thread until the block ends.

    A projector that died raises its error when the block ends, so a crash is reported
    as one, not only as a timeout of whatever the test waited for.
    """
    dlq_pub = Publisher(settings, source="projector")

    def dlq(msg: Message, error: BaseException) -> None:
        dlq_pub.send_to_dlq(msg.topic() or "", msg.key(), msg.value(), msg.headers(), error,
                            partition=msg.partition() or 0, offset=msg.offset() or 0)

    @contextlib.contextmanager
    def run(options: ProjectorOptions | None = None) -> Iterator[Projector]:
        projector = Projector(settings, engine, dlq, options=options)
        failures: list[BaseException] = []

        def target() -> None:
            try:
                projector.run()
            except BaseException as exc:
                failures.append(exc)

        thread = threading.Thread(target=target, name="projector", daemon=True)
        thread.start()
        try:
            yield projector
        finally:
            projector.stop()
            thread.join(30)
            assert not thread.is_alive(), "projector did not stop"
            # a projector that died mid-test fails the test with its error, not a timeout
            if failures:
                raise AssertionError(f"the projector failed: {failures[0]!r}") from failures[0]

    yield run
    dlq_pub.close()


class ProjectorProcess:
    """``foldflow run projector`` as a real child process (its output in ``log``)."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    def start(self) -> None:
        """Start the process (it seeks to the positions stored in PostgreSQL)."""
        env = {
            **os.environ,
            "FOLDFLOW_TOPIC_PREFIX": self.settings.topic_prefix,
            "FOLDFLOW_DATABASE_URL": self.settings.database_url,
            "FOLDFLOW_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
            "FOLDFLOW_PARTITIONS": str(self.settings.partitions),
            "FOLDFLOW_METRICS_PORT": "0",
            "FOLDFLOW_SERVICE_NAME": "projector",
        }
        self._out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "foldflow.cli.main", "run", "projector"],
            env=env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._close()

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL if it does not exit in 30 s)."""
        if self.proc is None or self.proc.poll() is not None:
            self._close()
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self._close()

    def _close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


@pytest.fixture
def projector_process(settings: Settings, tmp_path: Path) -> Iterator[ProjectorProcess]:
    """A projector process handle for the test's topics; stopped at the end."""
    proc = ProjectorProcess(settings, tmp_path / "projector.log")
    yield proc
    proc.stop()
