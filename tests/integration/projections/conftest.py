"""Fixtures of the projection integration tests: a private database, private topics,
a real projector running in a thread of the test process."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Message
from confluent_kafka.admin import AdminClient
from projection_support import reset_tables, scratch_database
from sqlalchemy import Engine

from foldflow.admin import ensure_topics
from foldflow.settings import Settings
from foldflow.topics import topic_specs
from producers import Publisher
from projections.db import make_engine, upgrade
from projections.projector import Projector, ProjectorOptions

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
    """``with run_projector() as p:`` runs a real projector in a thread until the block ends."""
    dlq_pub = Publisher(settings, source="projector")

    def dlq(msg: Message, error: BaseException) -> None:
        dlq_pub.send_to_dlq(msg.topic() or "", msg.key(), msg.value(), msg.headers(), error,
                            partition=msg.partition() or 0, offset=msg.offset() or 0)

    @contextlib.contextmanager
    def run(options: ProjectorOptions | None = None) -> Iterator[Projector]:
        projector = Projector(settings, engine, dlq, options=options)
        thread = threading.Thread(target=projector.run, name="projector", daemon=True)
        thread.start()
        try:
            yield projector
        finally:
            projector.stop()
            thread.join(30)
            assert not thread.is_alive(), "projector did not stop"

    yield run
    dlq_pub.close()
