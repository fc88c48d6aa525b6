"""Shared fixtures: real Kafka and PostgreSQL for the whole session (DESIGN §12).

``stack`` brings the local stack up (``foldflow.stack.up``) when nothing answers on the
configured addresses, or starts testcontainers when ``FOLDFLOW_USE_TESTCONTAINERS=1``.
Tests under ``tests/<kind>/`` get the ``<kind>`` marker automatically.

The configured database is a developer's own (``foldflow`` by default): no test writes
there. ``stack`` hands out a scratch database of the session instead (and exports it as
``FOLDFLOW_DATABASE_URL``, so every process a test starts uses it too), drops it at the
end, and fails the session if the configured database gained rows meanwhile.

The broker is shared too (a developer's own, when one answers): the topics and consumer
groups that appeared on it during the session are deleted at its end
(:func:`pytest_sessionfinish`; whoever else made them, as nothing says who did), so runs
do not pile up thousands of partitions whose metrics and state fill the broker's heap and
slow it down.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from projection_support import scratch_database
from sqlalchemy import create_engine, inspect, make_url, text
from sqlalchemy.exc import OperationalError

from foldflow import stack as local_stack
from foldflow.kafka import kafka_config
from foldflow.settings import Settings

# pytest-xdist's workers (`make test` runs most of the suite in two) inherit COLUMNS=80 and
# LINES=24: the CLI's consoles, made at import, would then wrap at 80 columns whatever
# width a test's own environment gives them.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)

KINDS = ("unit", "integration", "contract", "e2e", "chaos")
#: Kinds that always run against real services: the stack comes up even for a test that
#: does not ask for a fixture (it may read FOLDFLOW_* settings itself).
NEEDS_SERVICES = ("integration", "e2e", "chaos")
TESTS_DIR = Path(__file__).resolve().parent


_BROKER_BEFORE = pytest.StashKey[tuple[Settings, set[str], set[str]]]()


def _controller(session: pytest.Session) -> bool:
    """True in the process that runs the session: pytest-xdist's controller, or the only one."""
    return not hasattr(session.config, "workerinput")


def _topics_and_groups(admin: AdminClient) -> tuple[set[str], set[str]]:
    topics = set(admin.list_topics(timeout=30).topics)
    listed = admin.list_consumer_groups(request_timeout=30).result()
    return topics, {g.group_id for g in listed.valid}


def _note_broker(session: pytest.Session, settings: Settings) -> None:
    """Note the broker's topics and groups before the session's tests make theirs."""
    with contextlib.suppress(KafkaException):
        topics, groups = _topics_and_groups(AdminClient(kafka_config(settings)))
        session.stash[_BROKER_BEFORE] = (settings, topics, groups)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Note what the broker holds, when one answers already; else ``stack`` notes it once
    it brought the broker up in this process (under pytest-xdist that is a worker, and
    the controller, which never knew what the broker held before, deletes nothing)."""
    settings = Settings()
    if (_controller(session) and os.environ.get("FOLDFLOW_USE_TESTCONTAINERS") != "1"
            and local_stack.kafka_reachable(settings, timeout=2.0)):
        _note_broker(session, settings)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Delete the topics and (empty) consumer groups that appeared on the broker during
    the session; internal topics are left alone."""
    before = session.stash.get(_BROKER_BEFORE, None)
    if before is None:
        return
    settings, topics_before, groups_before = before
    try:
        admin = AdminClient(kafka_config(settings))
        topics, groups = _topics_and_groups(admin)
        topics = {t for t in topics - topics_before if not t.startswith("__")}
        groups -= groups_before
        futures = [*(admin.delete_topics(sorted(topics), operation_timeout=60).values()
                     if topics else ()),
                   *(admin.delete_consumer_groups(sorted(groups), request_timeout=60).values()
                     if groups else ())]
        for future in futures:
            with contextlib.suppress(KafkaException):  # a group still in use stays
                future.result()
    except KafkaException as exc:  # the broker is gone by now (a chaos test's?)
        message = f"could not delete the session's topics on {settings.kafka_bootstrap}: {exc}"
    else:
        message = (f"deleted the {len(topics):,} topics and {len(groups):,} consumer groups "
                   f"this session made on {settings.kafka_bootstrap}")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(message)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with the kind of the directory it lives in (tests/unit → unit, ...).

    Under pytest-xdist's ``--dist loadgroup`` (``make test``), a file's tests run in one
    process, one after another, and the chaos tests all in one: one chaos test at a time,
    each beside at most one file of the others.
    """
    grouped = config.pluginmanager.hasplugin("xdist")
    for item in items:
        try:
            kind = Path(item.path).resolve().relative_to(TESTS_DIR).parts[0]
        except (ValueError, IndexError):
            continue
        if kind in KINDS:
            item.add_marker(getattr(pytest.mark, kind))
        if grouped:
            group = "chaos" if kind == "chaos" else str(item.path)
            item.add_marker(pytest.mark.xdist_group(group))


def _testcontainers() -> Iterator[Settings]:
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer

    with (
        KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as kafka,
        PostgresContainer("postgres:16", driver="psycopg") as pg,
    ):
        os.environ["FOLDFLOW_KAFKA_BOOTSTRAP"] = kafka.get_bootstrap_server()
        os.environ["FOLDFLOW_DATABASE_URL"] = pg.get_connection_url()
        yield Settings()


#: Tables whose rows a test run would leave behind (projections and the gateway's keys).
WATCHED_TABLES = ("workflow_instances", "workflow_events", "step_executions",
                  "workflow_definitions", "projection_offsets", "api_keys")


def table_rows(database_url: str) -> dict[str, int]:
    """Rows of each :data:`WATCHED_TABLES` table that exists in the database."""
    engine = create_engine(database_url, connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as conn:
            present = set(inspect(conn).get_table_names())
            return {
                table: int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
                for table in WATCHED_TABLES if table in present
            }
    finally:
        engine.dispose()


@contextlib.contextmanager
def _session_database(settings: Settings) -> Iterator[Settings]:
    """A scratch database for the session, exported to child processes; afterwards, the
    configured database must hold the rows it held before."""
    before = table_rows(settings.database_url)
    previous = os.environ.get("FOLDFLOW_DATABASE_URL")
    with scratch_database(settings.database_url) as url:
        os.environ["FOLDFLOW_DATABASE_URL"] = url
        try:
            yield settings.model_copy(update={"database_url": url})
        finally:
            if previous is None:
                os.environ.pop("FOLDFLOW_DATABASE_URL", None)
            else:
                os.environ["FOLDFLOW_DATABASE_URL"] = previous
    try:
        after = table_rows(settings.database_url)
    except OperationalError:  # a chaos test may have left PostgreSQL restarting
        time.sleep(5)
        after = table_rows(settings.database_url)
    grown = {t: f"{before.get(t, 0)} -> {n}" for t, n in after.items() if n > before.get(t, 0)}
    shown = make_url(settings.database_url).render_as_string(hide_password=True)
    assert not grown, (
        f"tests wrote rows into the configured database {shown} "
        f"(a developer's own): {grown}; every test must use a scratch database"
    )


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings whose Kafka and PostgreSQL answer (starting the local stack if needed),
    with a scratch database of the session as ``database_url``."""
    if os.environ.get("FOLDFLOW_USE_TESTCONTAINERS") == "1":
        yield from _testcontainers()
        return
    settings = Settings()
    # `make test`'s parallel processes may both get here: `up` is locked across processes
    # and idempotent, so one starts the stack and the other finds it up.
    if not (local_stack.kafka_reachable(settings) and local_stack.postgres_reachable(settings)):
        try:
            local_stack.up(settings)
        except local_stack.StackError as exc:
            pytest.fail(f"could not bring the local stack up: {exc}", pytrace=False)
        if _controller(request.session):
            _note_broker(request.session, settings)
    missing = [
        name
        for name, ok in (
            (f"Kafka at {settings.kafka_bootstrap}", local_stack.kafka_reachable(settings)),
            (f"PostgreSQL at {settings.database_url}", local_stack.postgres_reachable(settings)),
        )
        if not ok
    ]
    if missing:
        pytest.fail(f"not reachable: {', '.join(missing)}", pytrace=False)
    with _session_database(settings) as scratch:
        yield scratch


@pytest.fixture(autouse=True)
def _services_for_service_tests(request: pytest.FixtureRequest) -> None:
    if any(request.node.get_closest_marker(kind) for kind in NEEDS_SERVICES):
        request.getfixturevalue("stack")


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: Settings) -> str:
    """``host:port`` of a running Kafka broker."""
    return stack.kafka_bootstrap


@pytest.fixture(scope="session")
def database_url(stack: Settings) -> str:
    """SQLAlchemy URL of a running PostgreSQL database."""
    return stack.database_url


@pytest.fixture(scope="session")
def admin(stack: Settings) -> AdminClient:
    """A confluent-kafka admin client for the session's broker."""
    return AdminClient(kafka_config(stack))


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[..., str]:
    """A factory of names no other test uses: ``unique_name()`` → ``t-<test>-<uuid8>``.

    ``unique_name("g")`` gives a consumer-group-style ``g-<test>-<uuid8>``.
    """
    test = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-")[:60]

    def make(kind: str = "t") -> str:
        return f"{kind}-{test}-{uuid.uuid4().hex[:8]}"

    return make
