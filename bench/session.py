"""One run's resources: private settings, the services as subprocesses, the observers.

:class:`Session` owns everything a run starts (topic prefix, run directory, service
processes, publisher, watchers) and tears it all down in :meth:`Session.close`, whatever
happened: services stopped, their state directories removed, private topics deleted, its
database dropped.

A run projects into a database of its own, created from the configured one and dropped at
the end, as its topics are its own: PostgreSQL's CPU per workflow grows with the indexes
it inserts into, so in a database that earlier runs and tests filled (19 GB on the machine
this was measured on, against 128 MB of ``shared_buffers``), PostgreSQL spent 0.42 CPU ms
per workflow against 0.29 in a run's own, a fifth of it writing out and reading back index
pages, and each run measured a bigger database than the last.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy import make_url

from foldflow.bench.alone import SINK_TASK_TYPE
from foldflow.bench.baseline import RawTopics, run_baseline
from foldflow.bench.config import TASK_TYPE, BenchConfig, BenchError
from foldflow.bench.driver import Driver
from foldflow.bench.results import BaselineResult
from foldflow.bench.scaleout import scratch_database
from foldflow.bench.services import (
    ServiceProcess,
    cpu_seconds,
    infrastructure_cpu_seconds,
    machine_cpu_times,
    start_service,
)
from foldflow.bench.watchers import EventWatcher, ProjectionWatcher, RssSampler, TaskWatcher
from foldflow.definitions import Definition
from foldflow.kafka import kafka_config
from foldflow.producers import Publisher
from foldflow.schemas.messages import DefinitionRegistered, Envelope
from foldflow.settings import Settings
from foldflow.topics import Topology

__all__ = ["Progress", "Session", "code_version", "cpu_meter"]

SERVICE_PACKAGES = ("foldflow", "schemas", "producers", "processors", "workers", "projections")
Progress = Callable[[str], None]


def code_version() -> str:
    """Which code the services run: its directory, git commit and uncommitted changes
    (or ``FOLDFLOW_BENCH_CODE``, say for a ``git archive`` snapshot)."""
    import foldflow

    root = Path(foldflow.__file__).resolve().parents[1]
    label = os.environ.get("FOLDFLOW_BENCH_CODE")  # e.g. the commit a snapshot came from
    if label:
        return f"{root} ({label})"
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True).stdout
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", *SERVICE_PACKAGES],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return f"{root} (not a git checkout)"
    changes = f", {len(dirty)} uncommitted change(s) in the services' packages" if dirty else ""
    return f"{root} at {head.strip()}{changes}"


def _service_env(settings: Settings, log_level: str | None, state_dir: Path) -> dict[str, str]:
    env = {
        "FOLDFLOW_STATE_DIR": str(state_dir),
        "FOLDFLOW_TOPIC_PREFIX": settings.topic_prefix,
        "FOLDFLOW_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "FOLDFLOW_PARTITIONS": str(settings.partitions),
        "FOLDFLOW_DATABASE_URL": settings.database_url,
    }
    for name in ("replication_factor", "min_insync_replicas"):  # else: the cluster's default
        value = getattr(settings, name)
        if value is not None:
            env[f"FOLDFLOW_{name.upper()}"] = str(value)
    if log_level:
        env["FOLDFLOW_LOG_LEVEL"] = log_level
    return env


def _delete_kafka_state(settings: Settings, prefix: str) -> tuple[int, int]:
    """Delete the run's topics and consumer groups (every name carries ``prefix``)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(kafka_config(settings))
    names = [n for n in admin.list_topics(timeout=30).topics if n.startswith(prefix)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result()
    groups: list[str] = []
    with contextlib.suppress(Exception):
        listed = admin.list_consumer_groups(request_timeout=30).result()
        groups = [g.group_id for g in listed.valid if g.group_id.startswith(prefix)]
        if groups:  # empty now that the services stopped
            for future in admin.delete_consumer_groups(groups, request_timeout=30).values():
                with contextlib.suppress(Exception):
                    future.result()
    return len(names), len(groups)


#: Partitions of other topics on the broker above which a run's note says they skew
#: Kafka's figures (with 2,300 topics left over by test runs, a quarter of the broker's CPU
#: went to collecting garbage).
CROWDED_BROKER_PARTITIONS = 1_000


def crowded_broker_note(others: int) -> str | None:
    """The note for a broker holding ``others`` partitions besides the run's, if too many."""
    if others <= CROWDED_BROKER_PARTITIONS:
        return None
    return (f"Kafka holds {others:,} partitions besides this run's: a broker's CPU per message "
            "grows with them (their state and metrics fill its heap, and it collects garbage "
            "all the time); delete the topics you no longer need, or run on a broker of its "
            "own, for figures that compare")


class Session:
    """One run's resources (settings with a private prefix, services, observers)."""

    def __init__(self, settings: Settings, config: BenchConfig, progress: Progress) -> None:
        self.config = config
        self.progress = progress
        self.run_id = f"bench-{datetime.now(UTC):%H%M%S}-{uuid.uuid4().hex[:6]}"
        self.settings = settings.model_copy(update={"topic_prefix": f"{self.run_id}."})
        self.topology = Topology.of(self.settings)
        self.run_dir = (Path(settings.state_dir) / "bench" / self.run_id).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = self.run_dir / "state"  # the services' FOLDFLOW_STATE_DIR
        self.services: list[ServiceProcess] = []
        self.publisher: Publisher | None = None
        self.events: EventWatcher | None = None
        self.tasks: TaskWatcher | None = None
        self.projection: ProjectionWatcher | None = None
        self.rss: RssSampler | None = None
        self.notes: list[str] = []
        self._database = contextlib.ExitStack()  # drops the run's database on close

    # --- set-up -------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the run's database (or note why the configured one serves), migrate it,
        and create the run's private topics.

        The topics are those of ``foldflow topics ensure`` (same partitions, cleanup,
        retention) plus ``message.timestamp.type=LogAppendTime``: every record's Kafka
        timestamp is then the moment the broker appended it, i.e. acked it (RF 1), which
        is what the dispatch target times ("result acked → next task command acked"). No Foldflow
        service reads record timestamps (they use the envelope's), so nothing else changes.
        """
        from confluent_kafka.admin import NewTopic

        from foldflow.admin import admin_client, ensure_topics
        from foldflow.projections.db import upgrade
        from foldflow.topics import topic_specs

        self._own_database()
        self.progress(f"run {self.run_id}: topics {self.settings.topic_prefix}*, "
                      f"database {self.database}")
        upgrade(self.settings)
        admin = admin_client(self.settings)
        specs = topic_specs(self.settings, task_types=(TASK_TYPE, SINK_TASK_TYPE))
        futures = admin.create_topics(
            [NewTopic(spec.name, num_partitions=spec.partitions,
                      replication_factor=spec.replication_factor or -1,
                      config={**spec.config, "message.timestamp.type": "LogAppendTime"})
             for spec in specs],
            operation_timeout=30,
        )
        for future in futures.values():
            future.result()
        ensure_topics(self.settings, task_types=(TASK_TYPE, SINK_TASK_TYPE),
                      admin=admin)  # waits, checks  # fmt: skip
        note = crowded_broker_note(sum(
            len(topic.partitions) for name, topic in admin.list_topics(timeout=30).topics.items()
            if not name.startswith(self.settings.topic_prefix)))
        if note is not None:
            self.notes.append(note)

    @property
    def database(self) -> str:
        """The name of the database the run projects into."""
        return make_url(self.settings.database_url).database or ""

    def _own_database(self) -> None:
        configured = self.database
        try:
            url = self._database.enter_context(scratch_database(
                self.settings.database_url, prefix=f"foldflow_{self.run_id.replace('-', '_')}"))
        except psycopg.Error as exc:
            self.notes.append(
                f"ran in database {configured}, not in one of its own ({str(exc).strip()}): "
                "PostgreSQL's CPU per workflow then depends on how much that database holds "
                "(its indexes against shared_buffers); grant the role CREATEDB for figures "
                "that compare")
        else:
            self.settings = self.settings.model_copy(update={"database_url": url})

    def analyze(self) -> None:
        """ANALYZE the run's tables. They grew from nothing in the warm-up, faster than
        autovacuum's analyses follow, and a planner that still takes them for empty reads
        them whole for each batch's lookups."""
        from foldflow.projections.db import make_engine

        engine = make_engine(self.settings, pool_size=1)
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE")
        finally:
            engine.dispose()

    def baseline(self) -> BaselineResult:
        """Measure raw Kafka on three more private topics (the services idle meanwhile)."""
        self.progress(f"raw Kafka baseline: {self.config.baseline_messages:,} messages")
        return run_baseline(
            self.settings,
            RawTopics(self.settings.topic_prefix + "bench.raw",
                      self.settings.topic_prefix + "bench.raw-probe",
                      self.settings.topic_prefix + "bench.raw-txn-probe"),
            messages=self.config.baseline_messages,
        )

    def start_services(self) -> None:
        """Start orchestrator, projector and workers; return once each is ready."""
        env = _service_env(self.settings, self.config.log_level, self.state_dir)
        self.services.append(start_service("orchestrator", ["orchestrator"], env=env,
                                           run_dir=self.run_dir))
        self.services.append(start_service("projector", ["projector"], env=env,
                                           run_dir=self.run_dir))
        for i in range(self.config.workers):
            self.services.append(start_service(
                f"worker-{i + 1}",
                ["worker", "--types", TASK_TYPE,
                 "--concurrency", str(self.config.worker_concurrency)],
                env=env, run_dir=self.run_dir,
            ))
        self.progress("starting " + ", ".join(s.name for s in self.services))
        for service in self.services:
            service.wait_ready(timeout=self.settings.service_ready_timeout)

    @property
    def orchestrator(self) -> ServiceProcess:
        """The orchestrator process (started first)."""
        return self.services[0]

    def stop_all_but_the_orchestrator(self) -> None:
        """Stop the workers and the projector (the orchestrator-alone phase)."""
        for service in self.services[1:]:
            service.stop(grace=self.settings.service_stop_grace)

    def register(self, definition: Definition) -> None:
        """Publish ``definition`` on the run's ``wf.definitions``."""
        assert self.publisher is not None
        payload = DefinitionRegistered(definition.name, definition.version, "default",
                                       definition.canonical_json())
        self.publisher.publish(self.topology.definitions, Envelope(
            event_id=str(uuid.uuid4()), timestamp=int(time.time() * 1000), source="bench",
            correlation_id=str(uuid.uuid4()), workflow_id=definition.key, payload=payload,
            tenant="default",
        ))

    def observe(self, driver: Driver) -> None:
        """Start the watchers: terminal events feed ``driver`` and the projection poll."""
        projection = ProjectionWatcher(self.settings.database_url,
                                       interval=self.config.poll_interval)

        def on_terminal(workflow_id: str) -> None:
            if workflow_id in driver.starts:  # not the orchestrator-alone phase's
                driver.finished(workflow_id)
                projection.watch(workflow_id)

        self.projection = projection
        self.events = EventWatcher(self.settings, self.topology.events, on_terminal=on_terminal)
        self.tasks = TaskWatcher(self.settings, self.topology.task(TASK_TYPE))
        self.rss = RssSampler(self.orchestrator.pid)
        projection.start()
        self.events.start()
        self.tasks.start()
        self.rss.start()

    def check_alive(self) -> None:
        """Raise :class:`BenchError` with the log tail of any service that exited."""
        dead = [s for s in self.services if not s.alive()]
        if dead:
            raise BenchError("; ".join(f"{s.name} exited ({s.process.returncode}):\n{s.tail()}"
                                       for s in dead))

    # --- tear-down ----------------------------------------------------------------------

    def close(self) -> None:
        """Stop everything this run started, delete its topics (unless kept) and drop its
        database."""
        for observer in (self.events, self.tasks, self.projection, self.rss):
            if observer is not None:
                with contextlib.suppress(Exception):
                    observer.stop()
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                service.stop(grace=self.settings.service_stop_grace)
        if self.publisher is not None:
            with contextlib.suppress(Exception):
                self.publisher.close()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        if not self.config.keep_topics:
            with contextlib.suppress(Exception):
                topics, groups = _delete_kafka_state(self.settings, self.settings.topic_prefix)
                self.progress(f"deleted {topics} topics and {groups} consumer groups "
                              f"{self.settings.topic_prefix}*")
        with contextlib.suppress(Exception):
            self._database.close()


@contextlib.contextmanager
def cpu_meter(run: Session) -> Iterator[dict[str, float]]:
    """CPU used while the block runs: ``busy``/``ours`` as shares of the whole machine
    (``ours``: the services, the harness, Kafka and PostgreSQL), ``cores:<process>`` as
    the average number of cores each of them kept busy, ``seconds`` the block's wall
    time."""
    out: dict[str, float] = {}

    def per_process() -> dict[str, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        used = {s.name: cpu_seconds(s.pid) or 0.0 for s in run.services}
        used["harness"] = usage.ru_utime + usage.ru_stime
        return used

    machine_before, wall = machine_cpu_times(), time.monotonic()
    before, infra_before = per_process(), infrastructure_cpu_seconds()
    yield out
    after, infra_after = per_process(), infrastructure_cpu_seconds()
    machine_after, wall = machine_cpu_times(), time.monotonic() - wall
    out["seconds"] = wall
    used = {name: max(0.0, seconds - before.get(name, infra_before.get(name, 0.0)))
            for name, seconds in {**after, **infra_after}.items()}
    for name, seconds in used.items():
        out[f"cores:{name}"] = seconds / max(wall, 1e-3)
    if machine_before and machine_after:
        total = machine_after[1] - machine_before[1]
        if total > 0:
            out["busy"] = (machine_after[0] - machine_before[0]) / total
            out["ours"] = sum(used.values()) / total
